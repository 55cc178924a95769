"""`TrainingStage`: the shape every stage that trains a model shares (pretrain, sft, reward, rlhf).

`train(ctx)` writes its checkpoints into the uncommitted artifact (so a killed run resumes) and `result.json` last;
once that file exists, a retry skips training and only rebuilds the stage result. Checkpoints are removed before
the commit: the artifact keeps the final model, not the way there.
"""

from __future__ import annotations

import abc

from llm_core.stage import Stage, StageContext, StageResult
from llm_core.train.checkpoint import CheckpointStore
from llm_core.train.model_files import RESULT_FILE


class TrainingStage(Stage):
    @abc.abstractmethod
    def train(self, ctx: StageContext) -> None:
        """Train into `ctx.writer()`, resuming from its checkpoints; write RESULT_FILE last."""

    @abc.abstractmethod
    def result(self, ctx: StageContext) -> StageResult:
        """The stage result, from what `train` left in the artifact."""

    def run(self, ctx: StageContext) -> StageResult:
        writer = ctx.writer()
        if not writer.exists(RESULT_FILE):
            self.train(ctx)
        CheckpointStore(writer).remove_all()
        return self.result(ctx)
