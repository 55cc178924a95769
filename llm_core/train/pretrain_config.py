"""Config of the `pretrain` stage: the model, the optimizer and schedule, the batch, evaluation and run settings.

Batch size is set as tokens per optimizer step (`tokens_per_step`); gradient accumulation is derived:
`tokens_per_step = batch_size * block_size * grad_accum * nproc`. Settings that change how the work is done but not
its result (process count, device, compile, checkpoint cadence, logging) are `runtime_fields`, outside the key.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from llm_core.config import StageConfig, StrictModel
from llm_core.model import GPTConfig
from llm_core.train.optim import OptimSection


class ModelSection(StrictModel):
    depth: int = Field(4, ge=1, description="the one dial: n_layer = depth, n_embd = 64*depth, n_head = depth")
    n_layer: int | None = Field(None, ge=1, description="overrides depth's choice")
    n_head: int | None = Field(None, ge=1, description="overrides depth's choice")
    n_embd: int | None = Field(None, ge=8, description="overrides depth's choice")
    block_size: int = Field(256, ge=8)
    mlp: Literal["gelu", "swiglu", "relu2"] = "gelu"
    tie_embeddings: bool = True
    dropout: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelSection:
        n_embd, n_head = self.n_embd or 64 * self.depth, self.n_head or self.depth
        if n_embd % n_head or (n_embd // n_head) % 2:
            raise ValueError(f"n_embd={n_embd} must split into n_head={n_head} heads of an even size")
        return self

    def gpt_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(
            vocab_size=vocab_size,
            block_size=self.block_size,
            n_layer=self.n_layer or self.depth,
            n_head=self.n_head or self.depth,
            n_embd=self.n_embd or 64 * self.depth,
            mlp=self.mlp,
            tie_embeddings=self.tie_embeddings,
            dropout=self.dropout,
        )


class PretrainConfig(StageConfig):
    model: ModelSection = Field(default_factory=ModelSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    max_steps: int = Field(1000, ge=1)
    continue_steps: int | None = Field(None, ge=1, description="on a refresh: steps of continued pretraining from the "
                                       "champion's base model (None: max_steps)")
    replay: float = Field(0.25, ge=0, lt=1, description="on a refresh: share of each batch drawn from the corpus's "
                                                         "earlier snapshots (llm_core/train/continued.py)")
    batch_size: int = Field(12, ge=1, description="sequences per process per micro-step")
    tokens_per_step: int | None = Field(None, ge=1, description="global batch in tokens; None = one micro-batch")
    eval_every: int = Field(250, ge=0, description="0 = only at the end")
    eval_tokens: int = Field(65536, ge=1, description="val tokens scored per evaluation (from the stream's start)")
    eval_batch_size: int = Field(32, ge=1)
    sample_prompts: list[str] = Field(default_factory=lambda: ["The "], description="continued at every evaluation")
    sample_tokens: int = Field(64, ge=0)
    bf16: bool = Field(True, description="bf16 autocast on CUDA (CPU trains in fp32)")
    # runtime: how, not what
    nproc: int = Field(1, ge=1, description="processes per node (DDP under torchrun when > 1)")
    nnodes: int = Field(1, ge=1, description="nodes; > 1: start the same stage on every node (shared artifact root)")
    rdzv_endpoint: str | None = Field(None, pattern=r"^[\w.\-]+:\d+$", description="host:port of the rendezvous")
    rdzv_id: str = Field("llmpipe", description="names one training job at the rendezvous")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    compile: bool = False
    threads: int = Field(0, ge=0, description="CPU threads for torch per process (0 = torch's default)")
    checkpoint_every: int = Field(200, ge=0, description="0 = only at the end")
    keep_checkpoints: int = Field(1, ge=1)
    log_every: int = Field(10, ge=1)

    runtime_fields: ClassVar[frozenset[str]] = frozenset(
        {"nproc", "nnodes", "rdzv_endpoint", "rdzv_id", "device", "compile", "threads", "checkpoint_every",
         "keep_checkpoints", "log_every"}
    )

    def grad_accum(self, world_size: int) -> int:
        """Micro-steps per optimizer step so that the global batch is `tokens_per_step` tokens."""
        per_micro = self.batch_size * self.model.block_size * world_size
        target = self.tokens_per_step or per_micro
        if target % per_micro:
            raise ValueError(
                f"pretrain.tokens_per_step={target} is not a multiple of batch_size * block_size * processes = "
                f"{self.batch_size} * {self.model.block_size} * {world_size} = {per_micro}")
        return target // per_micro

    @model_validator(mode="after")
    def _batch_fits(self) -> PretrainConfig:
        self.grad_accum(self.nproc * self.nnodes)
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError(f"pretrain.nnodes={self.nnodes} needs pretrain.rdzv_endpoint (host:port)")
        return self
