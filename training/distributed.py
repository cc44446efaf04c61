"""Data-parallel set-up for `torchrun`: one process per device, gradients averaged by DDP.

`torchrun --nproc_per_node N -m capbot train ...` sets RANK / WORLD_SIZE / LOCAL_RANK (and the rendezvous
address); without them training runs as a single process. GPUs use NCCL; CPUs use gloo, which is how the
tests run two processes on one machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, logs and evaluates."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when several processes share the work."""
        return self.world_size > 1


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """`auto` -> this process's GPU when CUDA is available, else the CPU (`inference.device` decides)."""
    from inference.device import resolve_device

    return resolve_device(requested, local_rank=local_rank)


def setup(requested_device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (environment variables), else run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank, device)


def teardown(info: DistInfo) -> None:
    """Leave the process group (no-op for a single process)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every process (e.g. while rank 0 writes a checkpoint)."""
    if info.enabled:
        dist.barrier()


def broadcast_flag(info: DistInfo, value: bool) -> bool:
    """Rank 0's boolean, on every rank (e.g. 'stop early')."""
    if not info.enabled:
        return value
    tensor = torch.tensor([int(value)], device=info.device)
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def mean_across(info: DistInfo, value: float) -> float:
    """The mean of a per-process number over all processes (for logging the loss)."""
    if not info.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / info.world_size
