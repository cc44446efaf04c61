"""Fine-tune a captioning model of any family: `train(TrainArgs(...)) -> TrainResult` (`capbot train`).

The driver reads top to bottom as numbered steps in `train`; each step is a helper of a few lines.
- Starts from any model directory or hub id of a family capbot captions with (`inference.families`: ViT+GPT-2,
  BLIP, GIT, Florence-2, SmolVLM), loaded, fed and saved the family's way; data is a COCO-format dataset directory (synthetic,
  COCO 2017, Karpathy: see `training.data.coco.find_split`), a JSONL file of `{"image", "caption"}`
  rows, or `TrainArgs.train_pairs` given directly (the retraining mix).
- Data-parallel under `torchrun` (gloo on CPU, NCCL on GPUs); only rank 0 evaluates and writes.
- Every `eval_every` steps and at the end, rank 0 captions the validation set and scores it; the best
  CIDEr so far is saved as a self-describing model directory at `out`. Registering it as a version is
  the caller's business (`capbot train`, the retraining job): training never touches the database.
- Checkpoints (`training.checkpoint`, under `run_dir`) resume exactly: the same run split in two gives
  identical weights.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, DistributedSampler

from training import distributed as dist_utils
from training.args import Pair, TrainArgs, TrainingError
from training.checkpoint import (
    MODEL_DIR, Checkpoint, Evaluation, Position, SavedModel, latest_checkpoint, load_checkpoint, set_rng_state,
)
from training.collate import CaptionCollator
from training.schedule import warmup_cosine
from training.train_run import Meter, Run

__all__ = ["Pair", "TrainArgs", "TrainResult", "TrainingError", "read_jsonl_pairs", "train"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run produced."""

    model_dir: Path | None  # `args.out` once the run is complete (None when stop_at ended it early, and on other ranks)
    saved: SavedModel | None  # the version in model_dir: id, step and evaluation
    parent_version: str | None  # the version of the model training started from (from its capbot.json)
    steps: int  # optimizer steps completed
    history: list[Evaluation] = field(default_factory=list)  # every evaluation of the run, resumed parts included
    final_loss: float = math.nan  # mean training loss over the last logging window
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, window mean) as logged by this call
    samples_per_second: float = 0.0
    seconds: float = 0.0
    resumed_from: int | None = None  # the step of the checkpoint resumed from
    device: str = "cpu"  # where the main process trained, e.g. "cuda:0"
    precision: str = "fp32"  # "bf16" when the forward pass ran under bf16 autocast

    @property
    def version(self) -> str | None:
        """The id of the saved model version."""
        return self.saved.version if self.saved else None

    @property
    def best_step(self) -> int | None:
        """The step whose weights were saved."""
        return self.saved.step if self.saved else None

    @property
    def metrics(self) -> dict[str, float]:
        """The saved model's validation scores and image count, as the registry records them ({} without one)."""
        evaluation = self.saved.evaluation if self.saved else None
        return {**evaluation.scores, "n_images": evaluation.n_images} if evaluation else {}


def train(args: TrainArgs) -> TrainResult:
    """Run (or resume) fine-tuning as described by `args`; see the module docstring."""
    started = time.perf_counter()
    # 1. Processes, devices and seeds.
    info = dist_utils.setup(args.device)
    try:
        with _cpu_threads(args.cpu_threads if info.device.type == "cpu" else 0):
            return _train(args, info, started)
    finally:
        dist_utils.teardown(info)


@contextmanager
def _cpu_threads(threads: int) -> Iterator[None]:
    """Use `threads` torch threads (0: leave torch's setting), restored afterwards."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads or saved)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _train(args: TrainArgs, info: dist_utils.DistInfo, started: float) -> TrainResult:
    torch.manual_seed(args.seed + info.rank)  # dropout differs per rank; DDP copies rank 0's weights
    # 2. Data: the training examples and the evaluation set.
    source = _train_source(args)
    val = _val_set(args)
    if args.epochs is not None:
        args.steps = _steps_for_epochs(len(source(0)), args, info)
    # 3. Model, tokenizer and image processor: from the newest checkpoint when resuming.
    ckpt_path = latest_checkpoint(args.run_dir) if args.resume else None
    _check_out(args, resuming=ckpt_path is not None)
    family, model, tokenizer, processor, parent = _load_model(args, ckpt_path)
    model.to(info.device)
    wrapped = _wrap(model, info)
    collator = _collator(family, model, tokenizer, processor, args)
    # 4. Optimizer and schedule; restore their state (and RNG, data position, evaluations) on resume.
    optimizer = _optimizer(model, args, info)
    scheduler = warmup_cosine(optimizer, warmup_steps=args.warmup_steps, total_steps=args.steps, min_ratio=args.min_lr_ratio)
    resumed = _restore(ckpt_path, optimizer, scheduler, info) if ckpt_path is not None else None
    position = resumed.position if resumed else Position()  # advanced in place by the loop
    resumed_from = position.step if resumed else None
    run = Run(args, info, model, tokenizer, processor, collator, val, parent, resumed, family=family)
    # 5. The loop: micro-batches -> accumulated gradients -> optimizer step -> log / evaluate / checkpoint.
    last_step = args.stop_at or args.steps
    stream = _batches(source, position, args, info, collator)
    meter = Meter()
    precision = precision_for(args, info.device)
    if info.is_main:
        log.info("training", extra={"device": str(info.device), "threads": torch.get_num_threads(),
                                    "precision": precision, "world_size": info.world_size,
                                    "steps": args.steps, "from_step": position.step, "out": str(args.out),
                                    "run_dir": str(args.run_dir)})
    with run.progress(position.step, last_step) as bar:
        while position.step < last_step:
            loss = _optimizer_step(wrapped, optimizer, scheduler, stream, position, args, info)
            meter.add(loss, args.batch_size * args.grad_accum * info.world_size)
            position.samples_seen += args.batch_size * args.grad_accum * info.world_size
            bar.advance(1)
            if position.step % args.log_every == 0 or position.step == last_step:
                run.log_train(position.step, last_step, meter, scheduler.get_last_lr()[0])
            evaluate_now = (args.eval_every and position.step % args.eval_every == 0) or position.step == args.steps
            save_now = (args.save_every and position.step % args.save_every == 0) or (evaluate_now and not args.save_every)
            with meter.paused():
                if evaluate_now:
                    run.evaluate(position.step)
                if save_now or position.step == last_step:
                    run.checkpoint(position, optimizer, scheduler)
    # 6. The result: the model directory (when the run is complete) and what it scored.
    run.finish(position)
    complete = position.step >= args.steps and run.saved is not None
    return TrainResult(
        model_dir=args.out if complete else None, saved=run.saved, parent_version=parent, steps=position.step,
        history=list(run.history), final_loss=meter.last_loss, losses=list(run.losses),
        samples_per_second=meter.samples_per_second, seconds=time.perf_counter() - started,
        resumed_from=resumed_from, device=str(info.device), precision=precision,
    )


def _check_out(args: TrainArgs, *, resuming: bool) -> None:
    """Refuse to replace a directory this run did not write (the best model overwrites `out`)."""
    out = args.out
    if not out.exists():
        return
    if not out.is_dir() or (any(out.iterdir()) and not (resuming and (out / "capbot.json").is_file())):
        raise TrainingError(f"--out {out} already exists; choose a new model directory (or --resume the run that "
                            "wrote it)", reason="out_exists")


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


# --- model ---------------------------------------------------------------------------------------------


def _load_model(args: TrainArgs, ckpt_path: Path | None):
    """The family, model, tokenizer, image processor (a family's processor) and the parent version id (from
    capbot.json, when present). Loaded as serving loads them (`inference.ved`, `inference.family_models`), from
    the hub id's local snapshot when `args.model` is one."""
    from inference import ved
    from inference.families import VISION_ENCODER_DECODER, family_of
    from inference.hub import model_directory
    from inference.modeldir import has_metadata, load_metadata, set_token_ids

    source = model_directory(args.model)
    family = family_of(source)  # an architecture capbot has no family for is refused here, in one line
    if family != VISION_ENCODER_DECODER:
        return (family, *_load_family_model(args, ckpt_path, source, family))
    model = ved.load_model(ckpt_path / MODEL_DIR if ckpt_path else source)
    tokenizer, processor = ved.load_tokenizer(source), ved.load_processor(source)
    set_token_ids(model, tokenizer)
    parent = load_metadata(source).version if has_metadata(source) else None
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
    return family, model, tokenizer, processor, parent


# The image tower of each family, frozen by --freeze-encoder (the text side learns the new words).
_VISION_TOWERS = {"blip": "vision_model", "git": "git.image_encoder", "florence2": "model.vision_tower",
                  "smolvlm": "model.vision_model"}


def _load_family_model(args: TrainArgs, ckpt_path: Path | None, source: Path, family: str):
    """Model, tokenizer, processor and parent version of a BLIP, GIT, Florence-2 or SmolVLM model."""
    from inference.modeldir import has_metadata, load_metadata
    from inference.family_models import load_model, load_processor

    model = load_model(ckpt_path / MODEL_DIR if ckpt_path else source, family)
    processor = load_processor(source, family)
    parent = load_metadata(source).version if has_metadata(source) else None
    if args.freeze_encoder:
        model.get_submodule(_VISION_TOWERS[family]).requires_grad_(False)
    if args.gradient_checkpointing:
        model.config.get_text_config().use_cache = False
        (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
    model.train()
    return model, processor.tokenizer, processor, parent


def _collator(family: str, model: torch.nn.Module, tokenizer: Any, processor: Any, args: TrainArgs):
    """ViT+GPT-2: `CaptionCollator`; other families: `FamilyCollator` (their own inputs and labels)."""
    from inference.families import VISION_ENCODER_DECODER

    if family == VISION_ENCODER_DECODER:
        return CaptionCollator(processor, tokenizer, max_length=args.max_length)
    from training.family_collate import FamilyCollator
    from training.family_labels import text_ids

    return FamilyCollator(family, processor, text_ids(family, model), max_length=args.max_length)


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


def _restore(path: Path, optimizer, scheduler, info: dist_utils.DistInfo) -> Checkpoint:
    ckpt = load_checkpoint(path)
    optimizer.load_state_dict(ckpt.optimizer)
    scheduler.load_state_dict(ckpt.scheduler)
    if len(ckpt.rng) == info.world_size:
        set_rng_state(ckpt.rng[info.rank])
    else:  # resumed on a different number of processes: the data order holds, dropout masks differ
        log.warning("checkpoint RNG states are for another world size", extra={"saved": len(ckpt.rng), "now": info.world_size})
    log.info("resumed", extra={"path": str(path), "step": ckpt.position.step})
    return ckpt
