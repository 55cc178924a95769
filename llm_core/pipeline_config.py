"""`PipelineConfig`: the global `run` settings plus one section per stage, in pipeline order."""

from __future__ import annotations

from pydantic import Field

from llm_core.config import RunConfig, StrictModel
from llm_core.crawl import CrawlConfig
from llm_core.evals import EvalConfig
from llm_core.extract import ExtractConfig
from llm_core.filters.stage import FilterConfig
from llm_core.index import IndexConfig
from llm_core.post.rank import RankConfig
from llm_core.post.report import ReportConfig
from llm_core.post.reward import RewardConfig
from llm_core.post.reward_data import RewardDataConfig
from llm_core.post.rlhf import RlhfConfig
from llm_core.post.sft import SftConfig
from llm_core.post.sft_data import SftDataConfig
from llm_core.tokenizer.bpe_stage import BpeConfig
from llm_core.tokenizer.tokenize_stage import TokenizeConfig
from llm_core.train.pretrain_config import PretrainConfig


class PipelineConfig(StrictModel):
    run: RunConfig = Field(default_factory=RunConfig)
    crawl: CrawlConfig = Field(default_factory=CrawlConfig)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    bpe: BpeConfig = Field(default_factory=BpeConfig)
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    sft_data: SftDataConfig = Field(default_factory=SftDataConfig)
    sft: SftConfig = Field(default_factory=SftConfig)
    rank: RankConfig = Field(default_factory=RankConfig)
    reward_data: RewardDataConfig = Field(default_factory=RewardDataConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    rlhf: RlhfConfig = Field(default_factory=RlhfConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
