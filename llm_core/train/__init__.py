"""Training: the generic loop and its parts, and the `pretrain` stage.

    from llm_core.train import Trainer, LoopSettings, OptimSection, CheckpointStore, init_distributed

- `trainer.py`: `Trainer(model, optim, batches, loss_fn, settings, env, checkpoints, evaluate, on_progress).fit()`:
  accumulation, clipping, bf16 autocast, compile, DDP, eval and checkpoint cadence, resume.
- `optim.py`: the `optim` config section (`OptimSection`) and what it builds: AdamW with decay/no-decay groups,
  `LRSchedule` (warmup + cosine or warmup-stable-decay).
- `data.py`: random windows over memory-mapped token shards, per-rank slices of each step's global batch.
- `checkpoint.py`: checkpoints inside an artifact (`latest.json` last), loaded without unpickling.
- `model_files.py`: a trained model's files in its artifact (`model/`, `history.json`, `result.json`), saved and
  loaded (checked against the manifest) for every training stage; `training_stage.py`: the shape they share.
- `distributed.py`: rank/world/device, process group (NCCL/gloo), `launch_torchrun`.
- `evaluation.py`, `report.py`: validation loss, bits per byte, samples, loss-curve image.
- `pretrain.py` (+ `pretrain_config.py`, `pretrain_worker.py`): the stage.
"""

from llm_core.train.checkpoint import CheckpointStore
from llm_core.train.distributed import DistEnv, init_distributed, launch_torchrun, shutdown_distributed
from llm_core.train.optim import LRSchedule, OptimSection, build_optimizer
from llm_core.train.trainer import BatchSource, LoopSettings, Trainer, TrainHistory

__all__ = [
    "BatchSource",
    "CheckpointStore",
    "DistEnv",
    "LRSchedule",
    "LoopSettings",
    "OptimSection",
    "TrainHistory",
    "Trainer",
    "build_optimizer",
    "init_distributed",
    "launch_torchrun",
    "shutdown_distributed",
]
