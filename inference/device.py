"""Where a model runs and in what precision: the one resolver for serving and training.

Serving and training read the same settings (`CAPBOT_DEVICE`, `CAPBOT_DTYPE`, `capbot train --precision`)
and follow the same rule: `auto` means the GPU when one is visible, and bf16 on a GPU that supports it,
fp32 everywhere else. They differ only in how bf16 is used, for reasons of numerics, not taste:
- serving casts the weights (half the memory and bandwidth; greedy tokens barely move);
- training keeps fp32 master weights and runs the forward pass under bf16 autocast (the optimizer's small
  updates would vanish in bf16 weights).
On CPU fp32 stays the default: bf16 pays only on CPUs with AMX, and fp32 matches reference outputs.

Serving also picks an engine mode (`CAPBOT_PRECISION`): `exact` is plain `generate` in the dtype above
(the tokens a user of transformers gets); `fast` is the CPU fast path (int8 ONNX Runtime graphs and an
own decode loop, docs/performance.md); `auto` is fast on the CPU and exact on a GPU. And a thread count
(`CAPBOT_THREADS`): intra-op threads for either engine on the CPU.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Literal

from storage.errors import UserError

if TYPE_CHECKING:
    import torch

Purpose = Literal["serve", "train"]

# Every spelling capbot accepts for a precision, by torch dtype name. torch is imported only when needed:
# the fast path serves without it (a third of a server's memory; docs/performance.md).
_PRECISIONS = {
    "fp32": "float32", "float32": "float32",
    "bf16": "bfloat16", "bfloat16": "bfloat16",
    "fp16": "float16", "float16": "float16",
}
_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


class EngineConfigError(UserError):
    """A device, dtype or generation option that cannot be honoured here."""


@dataclass(frozen=True)
class Placement:
    """A resolved device and precision."""

    device: torch.device
    weights: torch.dtype  # dtype the weights are held in
    autocast: torch.dtype | None = None  # dtype of the forward pass under autocast; None: no autocast

    @property
    def precision(self) -> str:
        """The precision the matrix work runs in, as a short name ("fp32", "bf16", "fp16")."""
        return _SHORT[str(self.autocast or self.weights).removeprefix("torch.")]


def resolve_device(requested: str = "auto", *, local_rank: int | None = None) -> torch.device:
    """`auto` means this process's GPU when CUDA is visible, else the CPU; asking for cuda without a GPU
    is a user error. `local_rank` picks the GPU of a torchrun process."""
    import torch

    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise EngineConfigError("device 'cuda' was requested but no CUDA GPU is available; use --device cpu", reason="no_gpu")
    if requested == "cuda" and local_rank is not None:
        return torch.device("cuda", local_rank)
    try:
        return torch.device(requested)
    except RuntimeError as exc:
        raise EngineConfigError(f"unknown device {requested!r}; use auto, cpu or cuda", reason="bad_device") from exc


def resolve_precision(requested: str, device: torch.device) -> torch.dtype:
    """The dtype for `requested` (auto, fp32/float32, bf16/bfloat16, fp16/float16) on `device`."""
    import torch

    if requested == "auto":
        return torch.bfloat16 if _gpu_has_bf16(device) else torch.float32
    try:
        return getattr(torch, _PRECISIONS[requested])
    except KeyError:
        raise EngineConfigError(
            f"unknown precision {requested!r}; use auto, fp32 (float32), bf16 (bfloat16) or fp16 (float16)",
            reason="bad_dtype",
        ) from None


def resolve_placement(device: str = "auto", precision: str = "auto", *, purpose: Purpose = "serve",
                      local_rank: int | None = None) -> Placement:
    """Device and precision for serving (cast weights) or training (fp32 weights + autocast); see the module."""
    import torch

    torch_device = resolve_device(device, local_rank=local_rank)
    dtype = resolve_precision(precision, torch_device)
    if purpose == "serve":
        return Placement(torch_device, weights=dtype)
    return Placement(torch_device, weights=torch.float32, autocast=None if dtype == torch.float32 else dtype)


def _gpu_has_bf16(device: torch.device) -> bool:
    import torch

    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def runs_on_cpu(requested: str = "auto") -> bool:
    """Whether `requested` (auto, cpu, cuda...) resolves to the CPU, importing torch only when the answer
    needs it: a CPU build of torch (version `+cpu`) that nobody imported yet cannot see a GPU."""
    if requested == "cpu":
        return True
    if requested == "auto" and "torch" not in sys.modules:
        try:
            if metadata.version("torch").endswith("+cpu"):
                return True
        except metadata.PackageNotFoundError:
            return True
    return resolve_device(requested).type == "cpu"


MODES = ("auto", "exact", "fast")
MAX_AUTO_THREADS = 4  # beyond this, one caption's small matrices gain little and other work loses cores


def resolve_mode(requested: str, device: str = "auto") -> str:
    """`exact` or `fast` for a requested mode on a requested device; fast exists on the CPU only."""
    if requested not in MODES:
        raise EngineConfigError(f"unknown precision mode {requested!r}; use auto, exact or fast", reason="bad_precision")
    on_cpu = runs_on_cpu(device)
    if requested == "auto":
        return "fast" if on_cpu else "exact"
    if requested == "fast" and not on_cpu:
        raise EngineConfigError("precision 'fast' runs on the CPU only; use exact (or auto) on a GPU, "
                                "or device cpu", reason="bad_precision")
    return requested


def resolve_threads(requested: int = 0) -> int:
    """Intra-op threads: `requested` when positive, else the cores this process may use, at most
    `MAX_AUTO_THREADS`. Engines run these threads without spin-waiting, so a busy machine slows them
    down instead of making them collapse (docs/performance.md, "Threads")."""
    if requested < 0:
        raise EngineConfigError(f"threads must be 0 (auto) or more, got {requested}", reason="bad_threads")
    if requested:
        return requested
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_AUTO_THREADS))
