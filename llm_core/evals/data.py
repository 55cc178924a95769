"""What every suite builds its items from, read once per eval: the config, the tokenizer, the stage's inputs, the
seed, the SFT conversations, the held-out pretraining text, and each model's decontamination index.

Decontamination: each item is checked against the training data of the model under test (base: the pretraining
text; sft: + SFT conversations; rlhf: + RL prompts). The pretraining text and the indexes are read on first use.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cached_property

from llm_core.chat.loaders import load_prompts
from llm_core.evals.config import EvalConfig
from llm_core.evals.contamination import ContaminationIndex
from llm_core.evals.pretraining_text import pretraining_pieces
from llm_core.stage import StageContext
from llm_core.store import ArtifactReader
from llm_core.tokenizer.base import Tokenizer


class EvalData:
    """The shared context of one eval: `config`, `tokenizer`, `seed`, the inputs (`has`, `reader`) and what several
    suites read from them."""

    def __init__(self, ctx: StageContext, config: EvalConfig, tokenizer: Tokenizer):
        self.ctx, self.config, self.tokenizer, self.seed = ctx, config, tokenizer, ctx.run.seed
        self.assistant_name = config.assistant_name or ""
        self.sft_train: list[list[dict]] = []  # the SFT training conversations (messages)
        self.sft_val: list[dict] = []  # the held-back ones (messages, source)
        if self.has("sft_data"):
            sft_data = self.reader("sft_data")
            self.assistant_name = self.assistant_name or sft_data.manifest.config.get("identity", {}).get("name", "")
            self.sft_train = [r["messages"] for r in sft_data.iter_rows("train/*.parquet", ["messages"])]
            self.sft_val = list(sft_data.iter_rows("val/*.parquet", ["messages", "source"]))

    def has(self, name: str) -> bool:
        """Whether the stage has the input `name`."""
        return name in self.ctx.inputs

    def reader(self, name: str) -> ArtifactReader:
        return self.ctx.reader(name)

    @cached_property
    def _pretraining(self) -> tuple[dict[str, list[str]], ContaminationIndex]:
        heldout: dict[str, list[str]] = defaultdict(list)
        index = ContaminationIndex(self.config.ngram)
        documents = self.reader("documents") if self.has("documents") else None
        for piece in pretraining_pieces(self.reader("tokens"), documents):
            if piece.heldout:
                heldout[piece.group].append(piece.text)
            else:
                index.add_texts([piece.text])
        return heldout, index

    @property
    def heldout(self) -> dict[str, list[str]]:
        """Held-out pretraining text per group (`web_en`, `curated_zh`, ...)."""
        return self._pretraining[0]

    @cached_property
    def indexes(self) -> dict[str, ContaminationIndex]:
        """The decontamination index of each GPT model: the training data it saw."""
        n = self.config.ngram
        pretrain = self._pretraining[1]
        sft = ContaminationIndex(n).add_texts(t for c in self.sft_train for m in c for t in message_texts(m))
        sft.add_prompts(c[0]["content"] for c in self.sft_train)
        indexes = {"base": pretrain, "sft": ContaminationIndex.union([pretrain, sft], n)}
        if self.has("rlhf"):
            indexes["rlhf"] = ContaminationIndex.union([indexes["sft"], self.rl_prompt_index()], n)
        return indexes

    def rl_prompt_index(self) -> ContaminationIndex:
        index = ContaminationIndex(self.config.ngram)
        path = self.reader("rlhf").manifest.config.get("prompts_path")
        if path:
            try:
                prompts = list(load_prompts(path))
            except FileNotFoundError:
                self.ctx.log.warning("RL prompts %s not found here: the policy's decontamination leaves them out", path)
                prompts = []
            index.add_texts(prompts).add_prompts(prompts)
        return index


def message_texts(message: dict) -> list[str]:
    """The texts of a message a model trained on: its content and, for a tool-using reply, its calls and outputs."""
    return [message["content"], *(p["text"] for p in message.get("parts") or () if p["kind"] != "text")]
