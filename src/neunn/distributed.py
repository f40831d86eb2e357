"""Multi-process training through torchrun: which process this is, and the few collective steps NeuNN needs.

    torchrun --nproc_per_node=4 -m neunn train data/ --out runs/ddp --preset neunn-b7      # one node, 4 GPUs
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 -m neunn train ...

Without torchrun's environment variables this is a single process and every call here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from neunn.errors import NeunnError


@dataclass(frozen=True)
class Distributed:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and shows progress."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def is_main_process() -> bool:
    """True outside torchrun and on its rank 0: the process that prints and writes."""
    return os.environ.get("RANK", "0") == "0"


def init_distributed(device_type: str, timeout: timedelta | None = None) -> Distributed:
    """Join the process group when launched by torchrun (NCCL on GPUs, Gloo on CPUs); ``timeout`` bounds each
    collective's wait (PyTorch's default when None)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    ctx = Distributed(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(local_gpu(ctx))
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo", timeout=timeout)
    return ctx


def local_gpu(ctx: Distributed) -> int:
    """This process's GPU on its node (its local rank); a clear error when torchrun started more processes than GPUs."""
    if ctx.local_rank >= torch.cuda.device_count():
        raise NeunnError(f"torchrun started process {ctx.local_rank} on a node with {torch.cuda.device_count()} "
                         f"GPU(s); use --nproc_per_node={torch.cuda.device_count()} or fewer, or run on the CPU.")
    return ctx.local_rank


def per_rank_batch(batch_size: int, ctx: Distributed) -> int:
    """The per-process batch for a global batch size, which the world size must divide."""
    if batch_size % ctx.world_size:
        lower = batch_size - batch_size % ctx.world_size
        raise NeunnError(f"batch_size {batch_size} is not divisible by the {ctx.world_size} training processes; "
                         f"use batch_size={lower or ctx.world_size} or {lower + ctx.world_size}.")
    return batch_size // ctx.world_size


def shutdown(ctx: Distributed) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
