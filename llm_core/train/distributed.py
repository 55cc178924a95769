"""Distributed data parallel plumbing: who am I (rank, world, device), process-group setup, and launching torchrun.

A run with one process needs none of this beyond `DistEnv.from_env()` (rank 0 of 1). Under `torchrun` the
environment names the rank and world size; the process group uses NCCL on GPUs and gloo on CPU (so a 2-process run
works on a laptop and in the tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def under_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def pick_device(requested: str) -> torch.device:
    """`auto`: cuda if available, else cpu."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def init_distributed(requested_device: str = "auto") -> DistEnv:
    """Join the process group when started by torchrun (one GPU per local rank); otherwise a single process."""
    device = pick_device(requested_device)
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistEnv(0, 1, 0, device)
    rank, world, local_rank = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank, world, local_rank, device)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.is_distributed:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.AVG if value.is_cuda else dist.ReduceOp.SUM)
        if not value.is_cuda:  # gloo has no AVG
            value /= env.world_size
    return value


def launch_torchrun(nproc: int, module: str, args: list[str], threads_per_proc: int | None = None,
                    nnodes: int = 1, rdzv_endpoint: str | None = None, rdzv_id: str = "llmpipe") -> None:
    """Run `python -m module args...` in `nproc` processes per node under torchrun; raise if any fails.

    One node: `--standalone`. Several: every node runs this same call and they meet at `rdzv_endpoint` (host:port
    of any one of them) through torchrun's c10d rendezvous, as `torchrun --nnodes N --rdzv-backend c10d` does."""
    if nnodes == 1:
        placement = ["--standalone", f"--nproc_per_node={nproc}"]
    else:
        if not rdzv_endpoint:
            raise ValueError(f"{nnodes} nodes need a rendezvous endpoint (host:port reachable from every node)")
        placement = [f"--nnodes={nnodes}", f"--nproc_per_node={nproc}", "--rdzv-backend=c10d",
                     f"--rdzv-endpoint={rdzv_endpoint}", f"--rdzv-id={rdzv_id}"]
    cmd = [sys.executable, "-m", "torch.distributed.run", *placement, "-m", module, *args]
    env = dict(os.environ)
    if threads_per_proc:
        env["OMP_NUM_THREADS"] = str(threads_per_proc)
    result = subprocess.run(cmd, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"torchrun with {nproc} processes x {nnodes} nodes failed (exit {result.returncode}): {' '.join(cmd)}")
