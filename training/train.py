"""Fine-tune a ViT+GPT-2 captioning model: `train(TrainArgs(...)) -> TrainResult` (`capbot train`).

The driver reads top to bottom as numbered steps in `train`; each step is a helper of a few lines.
- Starts from any model directory or hub id; data is a COCO-format dataset directory (synthetic,
  COCO 2017, Karpathy: see `training.data.coco.find_split`), a JSONL file of `{"image", "caption"}`
  rows, or `TrainArgs.train_pairs` given directly (the retraining mix).
- Data-parallel under `torchrun` (gloo on CPU, NCCL on GPUs); only rank 0 evaluates and writes.
- Every `eval_every` steps and at the end, rank 0 captions the validation set and scores it; the best
  CIDEr so far is saved as a self-describing model directory `<out>/model` (and registered as a
  candidate version when `database_url` is set).
- Checkpoints (`training.checkpoint`) resume exactly: the same run split in two gives identical weights.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import torch
from torch.utils.data import DataLoader, DistributedSampler

from capbot.errors import UserError
from training import distributed as dist_utils
from training.checkpoint import (
    MODEL_DIR, Checkpoint, Position, latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state,
)
from training.collate import CaptionCollator
from training.schedule import warmup_cosine
from training.train_run import Meter, Run

log = logging.getLogger(__name__)

Pair = tuple[Path, str]  # (image file, caption): one training example


class TrainingError(UserError):
    """Training cannot start: missing or empty data, a model that does not load, bad arguments."""


@dataclass
class TrainArgs:
    """Everything one training run needs. Paths may be strings; see each field's comment."""

    model: str  # model directory or hub id to start from
    out: Path  # run directory: checkpoints/, tb/ (TensorBoard), model/ (the best version)
    model_out: Path | None = None  # where the best model directory goes instead of <out>/model
    data: str | None = None  # COCO-format dataset directory or a .jsonl of {"image", "caption"} rows
    train_split: str = "train"
    val_split: str | None = "val"  # None: no evaluation; the last weights become the model
    train_pairs: Sequence[Pair] | None = None  # overrides `data` for training: fixed (image, caption) rows
    val_data: str | None = None  # dataset directory of the val split when it is not `data` (e.g. with train_pairs)
    steps: int = 1000  # optimizer steps of the whole run; the schedule is planned for this many
    epochs: float | None = None  # when set, replaces `steps`: this many passes over the training examples
    stop_at: int | None = None  # stop (with a checkpoint) after this step, e.g. to split a run in time-limited jobs
    batch_size: int = 32  # examples per process per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine decays to lr * this
    max_grad_norm: float = 1.0  # 0 disables clipping
    max_length: int = 32  # caption tokens including EOS; longer captions are cut
    freeze_encoder: bool = False  # train only the decoder (and the encoder-to-decoder projection)
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% slower
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on GPUs that support it, else fp32
    device: Literal["auto", "cpu", "cuda"] = "auto"
    eval_every: int = 0  # steps between evaluations; 0 = only at the end
    eval_limit: int | None = 500  # validation images per evaluation (None = all)
    eval_batch_size: int = 64
    eval_meteor: bool = False  # METEOR starts a JVM (~9 s): off for training-time evaluations by default
    num_beams: int = 1
    max_new_tokens: int = 24
    no_repeat_ngram_size: int = 3
    save_every: int = 0  # steps between checkpoints; 0 = at each evaluation (and always at the end)
    keep_checkpoints: int = 2
    resume: bool = False  # continue from the newest checkpoint in `out` (fresh start when there is none)
    seed: int = 0
    log_every: int = 10
    num_workers: int = 0  # DataLoader worker processes (images decode in them)
    tensorboard: bool = True
    samples: int = 8  # captioned validation images drawn into TensorBoard at each evaluation
    database_url: str | None = None  # register the best model as a candidate version here
    made_by: str = "train"  # recorded in the model's metadata ("retrain" when the loop calls this)
    progress: bool = True  # a progress bar on the main process

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.model_out = Path(self.model_out) if self.model_out is not None else self.out / "model"
        checks = {
            "steps": self.steps >= 1, "batch_size": self.batch_size >= 1, "grad_accum": self.grad_accum >= 1,
            "lr": self.lr > 0, "max_length": self.max_length >= 2, "warmup_steps": self.warmup_steps >= 0,
            "eval_every": self.eval_every >= 0, "save_every": self.save_every >= 0, "log_every": self.log_every >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise TrainingError(f"invalid training arguments: {', '.join(bad)}", reason="bad_args")
        if self.data is None and self.train_pairs is None:
            raise TrainingError("no training data: give a dataset directory (--data) or training pairs", reason="no_data")
        if self.epochs is not None and self.epochs <= 0:
            raise TrainingError("epochs must be positive", reason="bad_args")
        if self.stop_at is not None and not 1 <= self.stop_at <= self.steps:
            raise TrainingError(f"stop_at must be between 1 and steps ({self.steps})", reason="bad_args")


@dataclass
class TrainResult:
    """What a run produced."""

    model_dir: Path | None  # the best version's directory (None when the run stopped early via stop_at)
    version: str | None
    steps: int  # optimizer steps completed
    best_step: int | None
    metrics: dict[str, Any] = field(default_factory=dict)  # the best evaluation's scores
    history: list[dict[str, Any]] = field(default_factory=list)  # every evaluation: {"step", "cider", ...}
    final_loss: float = math.nan  # mean training loss over the last logging window
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, window mean) as logged by this call
    samples_per_second: float = 0.0
    seconds: float = 0.0
    resumed_from: int | None = None  # the step of the checkpoint resumed from
    registered: bool = False
    device: str = "cpu"  # where the main process trained, e.g. "cuda:0"
    precision: str = "fp32"  # "bf16" when the forward pass ran under bf16 autocast


def train(args: TrainArgs) -> TrainResult:
    """Run (or resume) fine-tuning as described by `args`; see the module docstring."""
    started = time.perf_counter()
    # 1. Processes, devices and seeds.
    info = dist_utils.setup(args.device)
    try:
        return _train(args, info, started)
    finally:
        dist_utils.teardown(info)


def _train(args: TrainArgs, info: dist_utils.DistInfo, started: float) -> TrainResult:
    torch.manual_seed(args.seed + info.rank)  # dropout differs per rank; DDP copies rank 0's weights
    if args.database_url and info.is_main:
        _check_registry(args.database_url)  # fail before hours of training, not after
    # 2. Data: the training examples and the evaluation set.
    source = _train_source(args)
    val = _val_set(args)
    if args.epochs is not None:
        args.steps = _steps_for_epochs(len(source(0)), args, info)
    # 3. Model, tokenizer and image processor: from the newest checkpoint when resuming.
    ckpt_path = latest_checkpoint(args.out) if args.resume else None
    model, tokenizer, processor, parent = _load_model(args, ckpt_path)
    model.to(info.device)
    wrapped = _wrap(model, info)
    collator = CaptionCollator(processor, tokenizer, max_length=args.max_length)
    # 4. Optimizer and schedule; restore their state (and RNG, data position, best score) on resume.
    optimizer = _optimizer(model, args, info)
    scheduler = warmup_cosine(optimizer, warmup_steps=args.warmup_steps, total_steps=args.steps, min_ratio=args.min_lr_ratio)
    position, best = Position(), {}
    if ckpt_path is not None:
        position, best = _restore(ckpt_path, optimizer, scheduler, info)
    run = Run(args, info, model, tokenizer, processor, collator, val, parent, best, position.step if ckpt_path else None)
    # 5. The loop: micro-batches -> accumulated gradients -> optimizer step -> log / evaluate / checkpoint.
    last_step = args.stop_at or args.steps
    stream = _batches(source, position, args, info, collator)
    meter = Meter()
    if info.is_main:
        log.info("training", extra={"device": str(info.device), "precision": precision_for(args, info.device),
                                    "world_size": info.world_size, "steps": args.steps, "from_step": position.step})
    with run.progress(position.step, last_step) as bar:
        while position.step < last_step:
            loss = _optimizer_step(wrapped, optimizer, scheduler, stream, position, args, info)
            meter.add(loss, args.batch_size * args.grad_accum * info.world_size)
            position.samples_seen += args.batch_size * args.grad_accum * info.world_size
            bar(1)
            if position.step % args.log_every == 0 or position.step == last_step:
                run.log_train(position.step, meter, scheduler.get_last_lr()[0])
            evaluate_now = (args.eval_every and position.step % args.eval_every == 0) or position.step == args.steps
            if evaluate_now:
                run.evaluate(position.step)
            save_now = (args.save_every and position.step % args.save_every == 0) or (evaluate_now and not args.save_every)
            if save_now or position.step == last_step:
                run.checkpoint(position, optimizer, scheduler)
    # 6. The result: the best model directory, registered as a candidate version.
    return run.finish(position, meter, time.perf_counter() - started)


# --- data ----------------------------------------------------------------------------------------------


class _PairSource:
    """Training pairs for an epoch: one reference per image per epoch (COCO), or fixed rows."""

    def __init__(self, dataset: Any = None, pairs: Sequence[Pair] | None = None, seed: int = 0) -> None:
        self.dataset, self.pairs, self.seed = dataset, pairs, seed

    def __call__(self, epoch: int) -> list[Pair]:
        if self.pairs is not None:
            return list(self.pairs)
        from training.data.coco import training_pairs

        return training_pairs(self.dataset, epoch, self.seed)

    def describe(self) -> dict[str, Any]:
        n = len(self.pairs) if self.pairs is not None else len(self.dataset)
        return {"examples": n, "source": "pairs" if self.pairs is not None else str(self.dataset.annotations)}


def _train_source(args: TrainArgs) -> _PairSource:
    if args.train_pairs is not None:
        pairs = [(Path(p), str(c)) for p, c in args.train_pairs]
        _check_pairs(pairs, "training pairs")
        return _PairSource(pairs=pairs, seed=args.seed)
    assert args.data is not None
    if str(args.data).endswith(".jsonl"):
        pairs = read_jsonl_pairs(args.data)
        return _PairSource(pairs=pairs, seed=args.seed)
    from training.data.coco import load_split

    return _PairSource(dataset=load_split(args.data, args.train_split), seed=args.seed)


def _steps_for_epochs(n_examples: int, args: TrainArgs, info: dist_utils.DistInfo) -> int:
    per_step = args.batch_size * args.grad_accum * info.world_size
    return max(1, math.ceil(n_examples * args.epochs / per_step))


def read_jsonl_pairs(path: str | Path) -> list[Pair]:
    """Training rows from a JSONL file: `{"image": path, "caption": text}` objects, or the records of
    `capbot feedback export --format jsonl` (read by `storage.feedback_file`, which defines that format).

    Relative image paths are resolved against the file's directory.
    """
    from storage.feedback_file import FeedbackFileError, feedback_row, jsonl_objects

    file = Path(path)
    if not file.is_file():
        raise TrainingError(f"training data file not found: {file}", reason="missing_data")
    pairs = []
    try:
        for where, row in jsonl_objects(file):
            if "image" in row and "caption" in row:  # the short hand-written form
                pairs.append((file.parent / str(row["image"]), str(row["caption"])))
            else:
                feedback = feedback_row(row, base_dir=file.parent, where=where)
                pairs.append((feedback.image_path, feedback.caption))
    except FeedbackFileError as exc:
        raise TrainingError(f"{exc.message} (expected {{\"image\": ..., \"caption\": ...}} or a feedback export)",
                            reason="bad_data") from exc
    _check_pairs(pairs, str(file))
    return pairs


def _check_pairs(pairs: Sequence[Pair], what: str) -> None:
    if not pairs:
        raise TrainingError(f"{what}: no training examples", reason="empty_data")
    missing = [str(p) for p, _ in pairs if not Path(p).is_file()]
    if missing:
        raise TrainingError(f"{what}: {len(missing)} image files are missing, e.g. {missing[0]}", reason="missing_images")


def _val_set(args: TrainArgs):
    if args.val_split is None:
        return None
    directory = args.val_data or (args.data if args.data and not str(args.data).endswith(".jsonl") else None)
    if directory is None:
        return None
    from training.data.coco import load_split

    val = load_split(directory, args.val_split)
    return val.subset(args.eval_limit) if args.eval_limit else val


def _epoch_batches(n: int, epoch: int, args: TrainArgs, info: dist_utils.DistInfo) -> list[list[int]]:
    """This rank's micro-batches (lists of example indices) for one epoch: full batches only."""
    sampler = DistributedSampler(range(n), num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=args.seed)
    sampler.set_epoch(epoch)
    indices = list(sampler)
    batches = [indices[i:i + args.batch_size] for i in range(0, len(indices) - args.batch_size + 1, args.batch_size)]
    return batches or [indices]  # a dataset smaller than one batch still trains


def _batches(source: _PairSource, position: Position, args: TrainArgs, info: dist_utils.DistInfo,
             collator: CaptionCollator) -> Iterator[dict[str, torch.Tensor]]:
    """Endless micro-batches from `position` on, advancing `position.epoch` / `batch_in_epoch` as consumed."""
    while True:
        pairs = source(position.epoch)
        batches = _epoch_batches(len(pairs), position.epoch, args, info)[position.batch_in_epoch:]
        # The loader gets its own generator so it never draws from the global RNG (dropout's), which
        # would make a resumed run's randomness differ from an uninterrupted one.
        generator = torch.Generator().manual_seed(args.seed * 1_000_003 + position.epoch)
        loader = DataLoader(pairs, batch_sampler=batches, collate_fn=collator, num_workers=args.num_workers, generator=generator)
        for batch in loader:
            position.batch_in_epoch += 1
            yield batch
        position.epoch, position.batch_in_epoch = position.epoch + 1, 0


def _check_registry(url: str) -> None:
    from storage import db

    engine = db.create_engine_for(url)
    try:
        db.require_current_schema(engine)  # DatabaseUnavailable (a UserError) names `capbot db upgrade`
    finally:
        engine.dispose()


# --- model ---------------------------------------------------------------------------------------------


def _load_model(args: TrainArgs, ckpt_path: Path | None):
    """Model, tokenizer, image processor and the parent version id (from capbot.json, when present)."""
    from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

    from inference.hub import load_pretrained
    from inference.modeldir import has_metadata, load_metadata, set_token_ids

    weights = str(ckpt_path / MODEL_DIR) if ckpt_path else args.model
    model = load_pretrained(VisionEncoderDecoderModel.from_pretrained, weights, "model")
    tokenizer = load_pretrained(AutoTokenizer.from_pretrained, args.model, "tokenizer")
    processor = load_pretrained(AutoImageProcessor.from_pretrained, args.model, "image processor")
    set_token_ids(model, tokenizer)
    parent = load_metadata(args.model).version if has_metadata(args.model) else None
    # The decoder reads the encoder's hidden states, never its pooled output: freeze the pooler so its
    # parameters expect no gradients (DDP would wait for them). Kept, not dropped, so the saved model has
    # every weight its config describes and loads without a "newly initialized" report.
    if getattr(model.encoder, "pooler", None) is not None:
        model.encoder.pooler.requires_grad_(False)
    if args.freeze_encoder:
        model.encoder.requires_grad_(False)
    if args.gradient_checkpointing:
        model.config.use_cache = False
        model.decoder.config.use_cache = False
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()  # transformers 5 renamed it; 4.x only has the old name
    model.train()
    return model, tokenizer, processor, parent


def _wrap(model: torch.nn.Module, info: dist_utils.DistInfo) -> torch.nn.Module:
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def _optimizer(model: torch.nn.Module, args: TrainArgs, info: dist_utils.DistInfo) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and norms (the usual transformer recipe)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = info.device.type == "cuda"
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.999), fused=fused)


def precision_for(args: TrainArgs, device: torch.device) -> str:
    """"bf16" on GPUs that support it (or when asked for), "fp32" otherwise (`inference.device` decides).

    On CPU the tiny preset trains ~3x slower under bf16 autocast (casting overhead dominates small
    matrices), so `auto` keeps CPU runs in fp32.
    """
    return _placement(args, device).precision


def _placement(args: TrainArgs, device: torch.device):
    from inference.device import resolve_placement

    return resolve_placement(str(device), args.precision, purpose="train")


def _autocast(args: TrainArgs, device: torch.device):
    dtype = _placement(args, device).autocast
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def _optimizer_step(wrapped, optimizer, scheduler, stream, position: Position, args: TrainArgs,
                    info: dist_utils.DistInfo) -> float:
    """Accumulate `grad_accum` micro-batches, clip, step; return the mean loss."""
    total = 0.0
    for micro in range(args.grad_accum):
        batch = {k: v.to(info.device, non_blocking=True) for k, v in next(stream).items()}
        # Gradients are averaged across ranks only on the last micro-batch of a step.
        sync = nullcontext() if micro == args.grad_accum - 1 or not info.enabled else wrapped.no_sync()
        with sync:
            with _autocast(args, info.device):
                loss = wrapped(**batch).loss / args.grad_accum
            loss.backward()
        total += float(loss.detach())
    if args.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(wrapped.parameters(), args.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    position.step += 1
    return total


def _restore(path: Path, optimizer, scheduler, info: dist_utils.DistInfo) -> tuple[Position, dict]:
    ckpt = load_checkpoint(path)
    optimizer.load_state_dict(ckpt.optimizer)
    scheduler.load_state_dict(ckpt.scheduler)
    if len(ckpt.rng) == info.world_size:
        set_rng_state(ckpt.rng[info.rank])
    else:  # resumed on a different number of processes: the data order holds, dropout masks differ
        log.warning("checkpoint RNG states are for another world size", extra={"saved": len(ckpt.rng), "now": info.world_size})
    log.info("resumed", extra={"path": str(path), "step": ckpt.position.step})
    return ckpt.position, ckpt.best
