"""The side effects of a training run, kept out of the loop: progress, logging, evaluation, saving.

Every method is called on every rank (some hold collective operations); only the main process (rank 0)
writes files, evaluates and logs, while the others wait at a barrier.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist

from training import distributed as dist_utils
from training.args import TrainArgs
from training.checkpoint import Checkpoint, Evaluation, Position, SavedModel, rng_state, save_checkpoint
from training.progress import NoBar, StepBar, step_bar
from training.tb import NullBoard, TensorBoard

log = logging.getLogger(__name__)

TB_SUBDIR = "tb"
VISION_ENCODER_DECODER = "vision-encoder-decoder"  # inference.families' name; the other families differ below


class Meter:
    """Loss and throughput over the current logging window, and totals for the run."""

    def __init__(self) -> None:
        self.last_loss = math.nan
        self.total_samples, self.total_steps, self.total_seconds = 0, 0, 0.0
        self.reset()

    def reset(self) -> None:
        """Start a new window."""
        self.losses: list[float] = []
        self.samples = 0
        self.since = time.perf_counter()

    def add(self, loss: float, samples: int) -> None:
        """Record one optimizer step."""
        self.losses.append(loss)
        self.samples += samples

    def window(self) -> tuple[float, float]:
        """(mean loss, samples per second) of the window, then start a new one."""
        seconds = max(time.perf_counter() - self.since, 1e-9)
        loss = sum(self.losses) / max(len(self.losses), 1)
        self.total_samples += self.samples
        self.total_steps += len(self.losses)
        self.total_seconds += seconds
        rate = self.samples / seconds
        self.reset()
        return loss, rate

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the time spent inside (evaluating, saving) out of the throughput."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.since += time.perf_counter() - start

    @property
    def samples_per_second(self) -> float:
        """Throughput over all windows so far (evaluation and saving time excluded)."""
        return self.total_samples / self.total_seconds if self.total_seconds else 0.0

    def seconds_left(self, steps_left: int) -> float:
        """Training time the remaining steps should take at the run's pace so far."""
        return steps_left * self.total_seconds / self.total_steps if self.total_steps else math.nan


class Run:
    """Rank-aware logging, evaluation, checkpointing and the final model of one `train` call.

    `saved` is the version in `args.out` (None until one is written); `history` holds every evaluation.
    """

    def __init__(self, args: TrainArgs, info: dist_utils.DistInfo, model: torch.nn.Module, tokenizer: Any,
                 processor: Any, collator: Any, val: Any, parent: str | None, resumed: Checkpoint | None, *,
                 family: str = "vision-encoder-decoder") -> None:
        self.args, self.info, self.model, self.family = args, info, model, family
        self.tokenizer, self.processor, self.collator, self.val = tokenizer, processor, collator, val
        self.parent = parent
        self.saved: SavedModel | None = resumed.saved if resumed else None
        self.history: list[Evaluation] = list(resumed.history) if resumed else []
        self.losses: list[tuple[int, float]] = []  # (step, mean loss of the window ending there), this call only
        self.board = TensorBoard(Path(args.run_dir) / TB_SUBDIR) if info.is_main and args.tensorboard else NullBoard()
        self.bar: NoBar | StepBar = NoBar()
        self._scorer = None

    # -- progress and logging --

    @contextmanager
    def progress(self, done: int, total: int) -> Iterator[NoBar | StepBar]:
        """A bar of optimizer steps on the main process when stderr is a terminal; yields it."""
        if not (self.info.is_main and self.args.progress):
            yield self.bar
            return
        with step_bar(done, total) as self.bar:
            try:
                yield self.bar
            finally:
                self.bar = NoBar()

    def log_train(self, step: int, last_step: int, meter: Meter, lr: float) -> None:
        """Loss (averaged over ranks), learning rate, throughput and time left after the last window.

        With a progress bar on screen the numbers go to the bar and the log line drops to DEBUG.
        """
        loss, rate = meter.window()
        loss = dist_utils.mean_across(self.info, loss)
        meter.last_loss = loss
        self.losses.append((step, loss))
        if self.info.is_main:
            self.board.scalars(step, {"train/loss": loss, "train/lr": lr, "train/samples_per_second": rate})
            self.bar.show(loss, rate)
            eta = meter.seconds_left(last_step - step)
            log.log(logging.DEBUG if self.bar.shown else logging.INFO, "train step", extra={
                "step": step, "of": last_step, "loss": round(loss, 4), "lr": lr, "samples_per_s": round(rate, 1),
                "eta_s": None if math.isnan(eta) else round(eta),
            })

    # -- evaluation --

    def evaluate(self, step: int) -> None:
        """Caption and score the validation set; keep the model if its CIDEr is the best so far."""
        if self.info.is_main and self.val is not None:
            predictions = self.predict([item.path for item in self.val.items])
            by_id = {item.image_id: text for item, text in zip(self.val.items, predictions)}
            refs = {item.image_id: list(item.captions) for item in self.val.items}
            metrics = self._scorer_instance().score(by_id, refs)
            evaluation = Evaluation(step=step, scores=metrics.scores(), n_images=metrics.n_images)
            self.history.append(evaluation)
            self.board.scalars(step, {f"eval/{k}": v for k, v in evaluation.scores.items()})
            self._log_samples(step, predictions, refs)
            log.info("evaluated", extra={"step": step, **{k: round(v, 4) for k, v in evaluation.scores.items()}})
            best = self.saved.evaluation if self.saved else None
            if best is None or evaluation.cider > best.cider:
                self.save_model(step, evaluation, metrics.to_dict())
                log.info("new best model", extra={"step": step, "cider": round(evaluation.cider, 4), "path": str(self.args.out)})
        dist_utils.barrier(self.info)

    @torch.no_grad()
    def predict(self, images: list[Path]) -> list[str]:
        """Greedy/beam captions for image files with the in-training weights."""
        from inference.generation import generate_captions
        from inference.types import GenerationOptions

        args, model = self.args, self.model
        options = GenerationOptions(num_beams=args.num_beams, max_new_tokens=args.max_new_tokens,
                                    no_repeat_ngram_size=args.no_repeat_ngram_size)
        was_training = model.training
        model.eval()
        texts: list[str] = []
        for start in range(0, len(images), args.eval_batch_size):
            batch = images[start:start + args.eval_batch_size]
            if self.family != VISION_ENCODER_DECODER:
                texts += _family_captions(self.family, model, self.processor, batch, options)
                continue
            pixels = self.collator.pixels(batch).to(self.info.device)
            texts += [c.text for c in generate_captions(model, self.tokenizer, pixels, options)]
        model.train(was_training)
        return texts

    def _scorer_instance(self):
        if self._scorer is None:
            from training.evaluate import CaptionScorer

            self._scorer = CaptionScorer(with_meteor=self.args.eval_meteor)  # one JVM for the whole run
        return self._scorer

    def _log_samples(self, step: int, predictions: list[str], refs: dict[int, list[str]]) -> None:
        if not self.args.samples or isinstance(self.board, NullBoard):
            return
        from inference.pixels import decode_image

        items = self.val.items[: self.args.samples]
        self.board.samples(step, [decode_image(i.path) for i in items], predictions[: len(items)], [refs[i.image_id][0] for i in items])

    # -- saving --

    def checkpoint(self, position: Position, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
        """Save weights, optimizer, scheduler, every rank's RNG state, the data position and the evaluations."""
        states = [rng_state()]
        if self.info.enabled:
            states = [None] * self.info.world_size
            dist.all_gather_object(states, rng_state())
        if self.info.is_main:
            ckpt = Checkpoint(
                position=replace(position), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                rng=states, saved=self.saved, history=list(self.history), args=self.args.to_json(),
            )
            save_checkpoint(self.args.run_dir, self.model, ckpt, keep=self.args.keep_checkpoints)
        dist_utils.barrier(self.info)

    def save_model(self, step: int, evaluation: Evaluation | None, metrics: dict[str, Any]) -> SavedModel:
        """Write the current weights to `args.out` with capbot metadata (parent, data, metrics, steps)."""
        from inference.modeldir import new_metadata, save_model_dir

        args = self.args
        metadata = new_metadata(
            made_by=args.made_by, parent_version=self.parent, base=args.model,
            source={"data": str(args.data) if args.data else "pairs"},
            extra={"step": step, "steps": args.steps, "metrics": {**metrics, "step": step}, "train_args": args.to_json()},
        )
        if self.family != VISION_ENCODER_DECODER:
            _save_family_model(self.model, self.processor, args.out, metadata)
            self.saved = SavedModel(step=step, version=metadata.version, evaluation=evaluation)
            return self.saved
        config = self.model.config
        use_cache = config.decoder.use_cache
        config.decoder.use_cache = self.model.decoder.config.use_cache = True  # serving wants the KV cache
        try:
            save_model_dir(self.model, self.processor, self.tokenizer, args.out, metadata, overwrite=True)
        finally:
            config.decoder.use_cache = self.model.decoder.config.use_cache = use_cache
        self.saved = SavedModel(step=step, version=metadata.version, evaluation=evaluation)
        return self.saved

    # -- the end --

    def finish(self, position: Position) -> None:
        """Close the logs; a complete run without a validation set keeps its last weights as the model."""
        if self.info.is_main:
            if position.step >= self.args.steps and self.saved is None:
                self.save_model(position.step, None, {})
            self.board.close()
            if self._scorer is not None:
                self._scorer.close()
        dist_utils.barrier(self.info)


def _family_captions(family: str, model: torch.nn.Module, processor: Any, images: list[Path], options: Any) -> list[str]:
    """Captions of a BLIP, GIT, Florence-2 or SmolVLM model in training, through serving's engine for these
    families (`inference.family_engine.FamilyEngine` around the in-training weights): the intake, the family's
    inputs and prompt, the prompt cut from the output, special tokens dropped."""
    from inference.family_engine import FamilyEngine
    from inference.pixels import decode_image

    engine = FamilyEngine(model, processor, family, version="training", batch_size=max(len(images), 1))
    return [out.text for out in engine.generate([decode_image(p) for p in images], options)]


def _save_family_model(model: torch.nn.Module, processor: Any, out: Path, metadata: Any) -> None:
    """The model, its processor (tokenizer, image processor, chat template) and capbot.json, written whole:
    a directory that plain transformers (`AutoModelForImageTextToText`, `AutoProcessor`) and capbot both load.
    Serving wants the KV cache, so the saved config keeps it on whatever training set."""
    from inference.modeldir import save_model_dir

    config = model.config.get_text_config()
    use_cache = getattr(config, "use_cache", None)
    if use_cache is not None:
        config.use_cache = True
    try:
        save_model_dir(model, processor, None, out, metadata, overwrite=True)
    finally:
        if use_cache is not None:
            config.use_cache = use_cache
