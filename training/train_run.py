"""The side effects of a training run, kept out of the loop: progress, logging, evaluation, saving.

Every method is called on every rank (some hold collective operations); only the main process (rank 0)
writes files, evaluates and logs, while the others wait at a barrier.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist

from training import distributed as dist_utils
from training.checkpoint import Checkpoint, Position, rng_state, save_checkpoint
from training.tb import NullBoard, TensorBoard

log = logging.getLogger(__name__)

TB_SUBDIR = "tb"


class Meter:
    """Loss and throughput over the current logging window, and totals for the run."""

    def __init__(self) -> None:
        self.last_loss = math.nan
        self.total_samples, self.total_seconds = 0, 0.0
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
        self.total_seconds += seconds
        rate = self.samples / seconds
        self.reset()
        return loss, rate

    @property
    def samples_per_second(self) -> float:
        """Throughput over all windows so far (evaluation and saving time excluded)."""
        return self.total_samples / self.total_seconds if self.total_seconds else 0.0


class Run:
    """Rank-aware logging, evaluation, checkpointing and the final model of one `train` call."""

    def __init__(self, args: Any, info: dist_utils.DistInfo, model: torch.nn.Module, tokenizer: Any, processor: Any,
                 collator: Any, val: Any, parent: str | None, best: dict, resumed_from: int | None) -> None:
        self.args, self.info, self.model = args, info, model
        self.tokenizer, self.processor, self.collator, self.val = tokenizer, processor, collator, val
        self.parent, self.best, self.resumed_from = parent, dict(best), resumed_from
        self.history: list[dict[str, Any]] = list(best.get("history", []))
        self.losses: list[tuple[int, float]] = []  # (step, mean loss of the window ending there), this call only
        self.board = TensorBoard(Path(args.out) / TB_SUBDIR) if info.is_main and args.tensorboard else NullBoard()
        self._scorer = None

    # -- progress and logging --

    @contextmanager
    def progress(self, done: int, total: int) -> Iterator[Callable[[int], None]]:
        """A progress bar of optimizer steps on the main process; yields `advance(n)`."""
        if not (self.info.is_main and self.args.progress):
            yield lambda _n: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("steps", total=total, completed=done)
            yield lambda n: bar.advance(task, n)

    def log_train(self, step: int, meter: Meter, lr: float) -> None:
        """Loss (averaged over ranks), learning rate and throughput of the last window."""
        loss, rate = meter.window()
        loss = dist_utils.mean_across(self.info, loss)
        meter.last_loss = loss
        self.losses.append((step, loss))
        if self.info.is_main:
            self.board.scalars(step, {"train/loss": loss, "train/lr": lr, "train/samples_per_second": rate})
            log.info("train step", extra={"step": step, "loss": round(loss, 4), "lr": lr, "samples_per_s": round(rate, 1)})

    # -- evaluation --

    def evaluate(self, step: int) -> None:
        """Caption and score the validation set; keep the model if its CIDEr is the best so far."""
        if self.info.is_main and self.val is not None:
            predictions = self.predict([item.path for item in self.val.items])
            by_id = {item.image_id: text for item, text in zip(self.val.items, predictions)}
            refs = {item.image_id: list(item.captions) for item in self.val.items}
            metrics = self._scorer_instance().score(by_id, refs)
            scores = {**metrics.scores(), "step": step}
            self.history.append(scores)
            self.board.scalars(step, {f"eval/{k}": v for k, v in metrics.scores().items()})
            self._log_samples(step, predictions, refs)
            log.info("evaluated", extra={"step": step, **{k: round(v, 4) for k, v in metrics.scores().items()}})
            if metrics.cider > self.best.get("cider", -math.inf):
                self._save_best(step, metrics)
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
            pixels = self.collator.pixels(images[start:start + args.eval_batch_size]).to(self.info.device)
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
        """Save weights, optimizer, scheduler, every rank's RNG state and the data position."""
        states = [rng_state()]
        if self.info.enabled:
            states = [None] * self.info.world_size
            dist.all_gather_object(states, rng_state())
        if self.info.is_main:
            ckpt = Checkpoint(
                position=Position(**asdict(position)), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                rng=states, best={**self.best, "history": self.history}, args=_plain_args(self.args),
            )
            save_checkpoint(self.args.out, self.model, ckpt, keep=self.args.keep_checkpoints)
        dist_utils.barrier(self.info)

    def _save_best(self, step: int, metrics: Any) -> None:
        path = self.save_model(step, {**metrics.to_dict(), "step": step})
        self.best = {"cider": metrics.cider, "step": step, "version": self._version, "metrics": {**metrics.scores(), "n_images": metrics.n_images}}
        log.info("new best model", extra={"step": step, "cider": round(metrics.cider, 4), "path": str(path)})

    def save_model(self, step: int, metrics: dict[str, Any]) -> Path:
        """Write the current weights as `<out>/model` with capbot metadata (parent, data, metrics, steps)."""
        from inference.modeldir import new_metadata, save_model_dir

        args = self.args
        metadata = new_metadata(
            made_by=args.made_by, parent_version=self.parent, base=args.model,
            source={"data": str(args.data) if args.data else "pairs"},
            extra={"step": step, "steps": args.steps, "metrics": metrics, "train_args": _plain_args(args)},
        )
        config = self.model.config
        use_cache = config.decoder.use_cache
        config.decoder.use_cache = self.model.decoder.config.use_cache = True  # serving wants the KV cache
        try:
            path = save_model_dir(self.model, self.processor, self.tokenizer, args.model_out, metadata, overwrite=True)
        finally:
            config.decoder.use_cache = self.model.decoder.config.use_cache = use_cache
        self._version = metadata.version
        return path

    # -- the end --

    def finish(self, position: Position, meter: Meter, seconds: float):
        """Close logs; when the run is complete, make sure a model exists and register it."""
        from training.train import TrainResult, precision_for

        complete = position.step >= self.args.steps
        registered = False
        if self.info.is_main:
            if complete and "version" not in self.best:  # no validation set: the last weights are the model
                self.save_model(position.step, {})
                self.best = {"step": position.step, "version": self._version, "metrics": {}}
            if complete and self.args.database_url:
                registered = self._register()
            self.board.close()
            if self._scorer is not None:
                self._scorer.close()
        dist_utils.barrier(self.info)
        has_model = "version" in self.best
        return TrainResult(
            model_dir=Path(self.args.model_out) if has_model else None,
            version=self.best.get("version"), steps=position.step, best_step=self.best.get("step"),
            metrics=dict(self.best.get("metrics", {})), history=list(self.history), final_loss=meter.last_loss,
            losses=list(self.losses), samples_per_second=meter.samples_per_second, seconds=seconds, resumed_from=self.resumed_from,
            registered=registered, device=str(self.info.device), precision=precision_for(self.args, self.info.device),
        )

    def _register(self) -> bool:
        from storage import db, registry
        from storage.errors import VersionExists

        engine = db.create_engine_for(self.args.database_url)
        try:
            with db.session_scope(engine) as session:
                registry.register_version(
                    session, version_id=self.best["version"], location=str(Path(self.args.model_out).resolve()),
                    parent_id=self.parent, metrics=self.best.get("metrics", {}), status="candidate",
                )
        except VersionExists:  # a resumed run finishing again after it had registered
            log.info("version already registered", extra={"version": self.best["version"]})
        finally:
            engine.dispose()
        log.info("registered candidate version", extra={"version": self.best["version"]})
        return True


def _plain_args(args: Any) -> dict[str, Any]:
    """TrainArgs as JSON-ready values (training pairs summarised, not copied)."""
    data = {k: v for k, v in vars(args).items() if k not in ("train_pairs", "database_url")}
    data["train_pairs"] = None if args.train_pairs is None else len(args.train_pairs)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}
