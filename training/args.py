"""`TrainArgs`: everything one training run is told, one field per option.

Each field's metadata holds its help text and the `--help` panel it belongs to; `capbot train` builds its
options from these fields (`capbot/cli/train_cmds.py`), so a field's name, default and help live here
only. Fields with `cli=False` are for library callers (the retraining job, tests).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from storage.errors import UserError

Pair = tuple[Path, str]  # (image file, caption): one training example

DATA, SCHEDULE, MODEL, EVAL, SAVE = "Model, data and output", "Schedule", "Training options", "Evaluation", "Checkpoints and logs"


class TrainingError(UserError):
    """Training cannot start: missing or empty data, a model that does not load, bad arguments."""


def arg(default: Any = dataclasses.MISSING, *, help: str, panel: str, cli: bool = True) -> Any:
    """A `TrainArgs` field with its help text (shown by `capbot train --help`) and `--help` panel."""
    return field(default=default, metadata={"help": help, "panel": panel, "cli": cli})


@dataclass
class TrainArgs:
    """Everything one training run needs; validated on construction (a bad value is a `TrainingError`)."""

    model: str = arg(help="Model directory or hub id to start from.", panel=DATA)
    out: Path = arg(help="Model directory to write: the best version by validation CIDEr (or the last weights "
                         "without a validation set), ready for `capbot evaluate --model` and CAPBOT_MODEL.", panel=DATA)
    run_dir: Path = arg(help="Run directory: checkpoints/ (for --resume) and tb/ (TensorBoard logs).", panel=DATA)
    data: str | None = arg(None, help="COCO-format dataset directory (synthetic, COCO 2017, Karpathy) or a .jsonl "
                                      "file of {\"image\", \"caption\"} rows.", panel=DATA)
    train_split: str = arg("train", help="Split to train on (train, train2017, or a Karpathy split).", panel=DATA)
    val_split: str | None = arg("val", help="Split to evaluate on; 'none' skips evaluation (the last weights "
                                            "become the model).", panel=DATA)
    val_data: str | None = arg(None, help="Dataset directory of the validation split when it is not --data.", panel=DATA)
    train_pairs: Sequence[Pair] | None = arg(None, help="Fixed (image, caption) rows; replaces `data` for training.",
                                             panel=DATA, cli=False)
    steps: int = arg(1000, help="Optimizer steps of the whole run; the schedule is planned for this many.", panel=SCHEDULE)
    epochs: float | None = arg(None, help="Passes over the training examples; replaces --steps when given.", panel=SCHEDULE)
    stop_at: int | None = arg(None, help="Stop with a checkpoint after this step (continue later with --resume).",
                              panel=SCHEDULE)
    batch_size: int = arg(32, help="Examples per process per micro-batch.", panel=SCHEDULE)
    grad_accum: int = arg(1, help="Micro-batches per optimizer step.", panel=SCHEDULE)
    lr: float = arg(5e-4, help="Peak learning rate (AdamW), reached after the warmup. 5e-4 suits fine-tuning; "
                               "training from scratch (the tiny preset) wants about 1e-3.", panel=SCHEDULE)
    weight_decay: float = arg(0.01, help="AdamW weight decay (not on biases and norms).", panel=SCHEDULE)
    warmup_steps: int = arg(100, help="Linear warmup steps before the cosine decay.", panel=SCHEDULE)
    min_lr_ratio: float = arg(0.1, help="The cosine decays to lr times this.", panel=SCHEDULE)
    max_grad_norm: float = arg(1.0, help="Gradient clipping norm; 0 turns clipping off.", panel=SCHEDULE)
    max_length: int = arg(32, help="Longest training caption in tokens, EOS included; longer ones are cut.", panel=SCHEDULE)
    seed: int = arg(0, help="Seed for data order and dropout.", panel=SCHEDULE)
    freeze_encoder: bool = arg(False, help="Train only the decoder (and its cross-attention).", panel=MODEL)
    gradient_checkpointing: bool = arg(False, help="Recompute activations in the backward pass: less memory, "
                                                   "about 30% slower.", panel=MODEL)
    precision: Literal["auto", "fp32", "bf16"] = arg("auto", help="auto: bf16 autocast on GPUs that support it, "
                                                                  "fp32 elsewhere.", panel=MODEL)
    device: Literal["auto", "cpu", "cuda"] = arg("auto", help="Where to train; auto picks CUDA when available.", panel=MODEL)
    num_workers: int = arg(0, help="DataLoader worker processes decoding images.", panel=MODEL)
    cpu_threads: int = arg(0, help="Threads for training on the CPU; 0: torch's default (one per core). Small "
                                   "models such as the tiny preset train fastest on 1, and many times faster on "
                                   "a busy machine.", panel=MODEL)
    eval_every: int = arg(0, help="Evaluate every N steps; 0: only at the end.", panel=EVAL)
    eval_limit: int = arg(500, help="Validation images per evaluation; 0: all of them.", panel=EVAL)
    eval_batch_size: int = arg(64, help="Images per batch when captioning the validation set.", panel=EVAL)
    eval_meteor: bool = arg(False, help="Include METEOR in evaluations (starts a Java VM, about 9 s).", panel=EVAL)
    num_beams: int = arg(1, help="Beam width when captioning the validation set; 1 = greedy.", panel=EVAL)
    max_new_tokens: int = arg(24, help="Longest validation caption in tokens.", panel=EVAL)
    no_repeat_ngram_size: int = arg(3, help="Forbid repeating n-grams of this size in validation captions; 0: off.",
                                    panel=EVAL)
    samples: int = arg(8, help="Captioned validation images drawn into TensorBoard at each evaluation.", panel=EVAL)
    save_every: int = arg(0, help="Checkpoint every N steps; 0: at each evaluation (and always at the end).", panel=SAVE)
    keep_checkpoints: int = arg(2, help="Newest checkpoints kept; older ones are deleted.", panel=SAVE)
    resume: bool = arg(False, help="Continue from the newest checkpoint in --run-dir (a fresh start when there is "
                                   "none).", panel=SAVE)
    log_every: int = arg(10, help="Steps between loss / throughput log lines and TensorBoard points.", panel=SAVE)
    tensorboard: bool = arg(True, help="Write TensorBoard logs to RUN_DIR/tb.", panel=SAVE)
    progress: bool = arg(True, help="A progress bar on the main process when stderr is a terminal.", panel=SAVE, cli=False)
    made_by: str = arg("train", help="Recorded in the model's metadata (\"retrain\" for the retraining job).",
                       panel=MODEL, cli=False)

    def __post_init__(self) -> None:
        self.out, self.run_dir = Path(self.out), Path(self.run_dir)
        if isinstance(self.val_split, str) and self.val_split.lower() == "none":
            self.val_split = None
        bad = [name for name, ok in self._checks().items() if not ok]
        if bad:
            raise TrainingError(f"invalid training arguments: {', '.join(bad)}", reason="bad_args")
        if self.data is None and self.train_pairs is None:
            raise TrainingError("no training data: give a dataset directory (--data) or training pairs", reason="no_data")
        if self.stop_at is not None and not 1 <= self.stop_at <= self.steps:
            raise TrainingError(f"stop_at must be between 1 and steps ({self.steps})", reason="bad_args")

    def _checks(self) -> dict[str, bool]:
        return {
            "steps": self.steps >= 1, "epochs": self.epochs is None or self.epochs > 0,
            "batch_size": self.batch_size >= 1, "grad_accum": self.grad_accum >= 1, "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0, "warmup_steps": self.warmup_steps >= 0,
            "min_lr_ratio": 0 <= self.min_lr_ratio <= 1, "max_grad_norm": self.max_grad_norm >= 0,
            "max_length": self.max_length >= 2, "precision": self.precision in _choices("precision"),
            "device": self.device in _choices("device"), "num_workers": self.num_workers >= 0,
            "cpu_threads": self.cpu_threads >= 0,
            "eval_every": self.eval_every >= 0, "eval_limit": self.eval_limit >= 0,
            "eval_batch_size": self.eval_batch_size >= 1, "num_beams": self.num_beams >= 1,
            "max_new_tokens": self.max_new_tokens >= 1, "no_repeat_ngram_size": self.no_repeat_ngram_size >= 0,
            "samples": self.samples >= 0, "save_every": self.save_every >= 0,
            "keep_checkpoints": self.keep_checkpoints >= 1, "log_every": self.log_every >= 1,
        }

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values for metadata and checkpoints (training pairs counted, not copied)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "train_pairs"}
        data["train_pairs"] = None if self.train_pairs is None else len(self.train_pairs)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}


def _choices(name: str) -> tuple[str, ...]:
    return typing.get_args(typing.get_type_hints(TrainArgs)[name])
