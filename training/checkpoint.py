"""Training checkpoints that resume exactly: model, optimizer, scheduler, RNG states and data position.

Layout under a run directory (`TrainArgs.run_dir`):
    checkpoints/step-000200/model/      the weights as a `save_pretrained` directory (loads without capbot)
    checkpoints/step-000200/state.pt    optimizer, scheduler, RNG states, position, evaluations, arguments
    checkpoints/LATEST                  the name of the newest complete checkpoint

A checkpoint is written to a temporary directory and renamed into place before LATEST points at it, so a
crash mid-save leaves the previous checkpoint usable.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from storage.errors import UserError

log = logging.getLogger(__name__)

LATEST = "LATEST"
STATE_FILE = "state.pt"
MODEL_DIR = "model"


class CheckpointError(UserError):
    """A checkpoint to resume from is missing or unreadable."""


@dataclass
class Position:
    """How far training got: optimizer steps done and where the data stream stands."""

    step: int = 0  # optimizer steps completed
    epoch: int = 0  # epoch the next micro-batch comes from
    batch_in_epoch: int = 0  # micro-batches of that epoch already consumed (this rank's share)
    samples_seen: int = 0  # training examples over all ranks


@dataclass(frozen=True)
class Evaluation:
    """The scores of one evaluation of the validation set."""

    step: int
    scores: dict[str, float]  # metric name -> score: bleu_1..bleu_4, rouge_l, cider (meteor when asked for)
    n_images: int

    @property
    def cider(self) -> float:
        """The score that picks the best model."""
        return self.scores["cider"]


@dataclass(frozen=True)
class SavedModel:
    """The version a run wrote to its model directory."""

    step: int
    version: str
    evaluation: Evaluation | None = None  # None without a validation set: the last weights are the model


@dataclass
class Checkpoint:
    """Everything besides the weights that a resumed run needs."""

    position: Position
    optimizer: dict
    scheduler: dict
    rng: list[dict]  # one entry per rank: each process draws its own dropout masks
    saved: SavedModel | None = None  # the best model so far (already in the model directory)
    history: list[Evaluation] = field(default_factory=list)  # every evaluation so far
    args: dict = field(default_factory=dict)  # the TrainArgs that started the run, for reference

    @classmethod
    def from_state(cls, state: dict) -> "Checkpoint":
        """Rebuild from `asdict(checkpoint)` as saved in state.pt."""
        saved = state.get("saved")
        if saved is not None:
            evaluation = saved.get("evaluation")
            saved = SavedModel(**{**saved, "evaluation": Evaluation(**evaluation) if evaluation else None})
        return cls(**{**state, "position": Position(**state["position"]), "saved": saved,
                      "history": [Evaluation(**e) for e in state.get("history", [])]})


def rng_state() -> dict:
    """This process's random number generator states (Python, NumPy, torch CPU and CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(run_dir: str | Path) -> Path:
    """Where a run keeps its checkpoints."""
    return Path(run_dir) / "checkpoints"


def save_checkpoint(run_dir: str | Path, model: Any, ckpt: Checkpoint, *, keep: int = 2) -> Path:
    """Write a checkpoint for `ckpt.position.step`, point LATEST at it, and prune all but the newest `keep`."""
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{ckpt.position.step:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
    try:
        model.save_pretrained(tmp / MODEL_DIR)
        torch.save(asdict(ckpt), tmp / STATE_FILE)
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_latest(root, name)
    _prune(root, keep)
    log.info("saved checkpoint", extra={"path": str(final), "step": ckpt.position.step})
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None when it has none."""
    root = checkpoint_dir(run_dir)
    try:
        name = (root / LATEST).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    path = root / name
    return path if (path / STATE_FILE).is_file() else None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint's state (the weights are loaded from `path/model` by the caller)."""
    file = Path(path) / STATE_FILE
    try:
        # weights_only=False: the state holds NumPy RNG tuples; checkpoints are files this program wrote.
        raw = torch.load(file, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}", reason="missing_checkpoint") from None
    except Exception as exc:  # a truncated or foreign file
        raise CheckpointError(f"cannot read checkpoint {file}: {exc}", reason="bad_checkpoint") from exc
    try:
        return Checkpoint.from_state(raw)
    except (TypeError, KeyError) as exc:  # another capbot version's layout
        raise CheckpointError(f"checkpoint {file} has an unexpected layout ({exc}); start a new run",
                              reason="bad_checkpoint") from exc


def _write_latest(root: Path, name: str) -> None:
    tmp = root / f".{LATEST}.tmp"
    tmp.write_text(name + "\n", encoding="utf-8")
    os.replace(tmp, root / LATEST)


def _prune(root: Path, keep: int) -> None:
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
