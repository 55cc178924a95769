"""The stages of the pipeline, in execution order (each stage's inputs come before it): the one place a stage is
listed. `PipelineConfig`'s sections (llm_core/pipeline_config.py) and the planner (llm_core/pipeline.py) follow from
it; the top of llm_core/stage.py says how to add a stage."""

from __future__ import annotations

from llm_core.corpus.promote import PromoteStage
from llm_core.corpus.stage import CorpusStage
from llm_core.crawl import CrawlStage
from llm_core.evals import EvalStage
from llm_core.extract import ExtractStage
from llm_core.filters.stage import FilterStage
from llm_core.index import IndexStage
from llm_core.preference.pairs_stage import RewardDataStage
from llm_core.preference.rank_stage import RankStage
from llm_core.preference.reward_stage import RewardStage
from llm_core.report.stage import ReportStage
from llm_core.rl.stage import RlhfStage
from llm_core.sft.data_stage import SftDataStage
from llm_core.sft.stage import SftStage
from llm_core.stage import Stage
from llm_core.tokenizer.bpe_stage import BpeStage
from llm_core.tokenizer.tokenize_stage import TokenizeStage
from llm_core.train.pretrain import PretrainStage

STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in [
        CrawlStage(),
        ExtractStage(),
        FilterStage(),
        IndexStage(),
        BpeStage(),
        TokenizeStage(),
        CorpusStage(),
        PretrainStage(),
        SftDataStage(),
        SftStage(),
        RankStage(),
        RewardDataStage(),
        RewardStage(),
        RlhfStage(),
        EvalStage(),
        PromoteStage(),
        ReportStage(),
    ]
}
