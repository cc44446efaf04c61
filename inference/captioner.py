"""`LocalCaptioner`: the in-process `Captioner`, with a model swap that never drops a request."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image

from inference.device import resolve_mode, resolve_threads, runs_on_cpu
from inference.generation import check_options
from inference.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from inference.pixels import decode_image
from inference.types import Caption, GenerationOptions, ImageInput

log = logging.getLogger(__name__)

EngineLoader = Callable[..., Any]  # (model, *, device, dtype, batch_size, precision, threads, cache_dir) -> engine


def load_engine(model: str | Path, *, device: str = "auto", dtype: str = "auto", batch_size: int = 8,
                precision: str = "exact", threads: int = 0, cache_dir: Path | None = None) -> Any:
    """The engine for `precision` (`inference.device.resolve_mode`): the exact `CaptionEngine` (plain
    `generate`) or the CPU fast path's `FastEngine` (int8 ONNX Runtime graphs, own decode loop). Only the
    exact engine imports torch and transformers' models."""
    if resolve_mode(precision, device) == "fast":
        from inference.fast.engine import FastEngine

        return FastEngine.load(model, batch_size=batch_size, threads=resolve_threads(threads), cache_dir=cache_dir)
    import torch

    from inference.engine import CaptionEngine

    if threads and runs_on_cpu(device):
        torch.set_num_threads(resolve_threads(threads))  # 0: leave torch's own choice (all cores) alone
    return CaptionEngine.load(model, device=device, dtype=dtype, batch_size=batch_size)


class LocalCaptioner:
    """Captions images with a model loaded in this process (CPU or GPU).

    `model` is a hub id or a model directory. `reload` swaps in another model while requests keep being
    served: a request holds the engine it started with, so an in-flight batch finishes on the old model.
    `precision` is exact (plain `generate`, today's fp32 tokens), fast (CPU: int8 ONNX Runtime) or auto
    (fast on CPU); `threads` is the intra-op thread count (0: `inference.device.resolve_threads`);
    `cache_dir` is where fast conversions go when the model directory is read-only.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
        max_image_bytes: int = DEFAULT_MAX_BYTES,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
        default_options: GenerationOptions | None = None,
        precision: str = "exact",
        threads: int = 0,
        cache_dir: Path | None = None,
        engine_loader: EngineLoader = load_engine,
    ) -> None:
        self.device, self.dtype, self.batch_size = device, dtype, batch_size
        self._engine_args = {"precision": precision, "threads": threads, "cache_dir": cache_dir}
        self.max_image_bytes, self.max_image_pixels = max_image_bytes, max_image_pixels
        self.default_options = default_options or GenerationOptions()
        check_options(self.default_options)
        self._load = engine_loader
        self._lock = threading.Lock()
        self._engine: Any = self._load(model, device=device, dtype=dtype, batch_size=batch_size, **self._engine_args)

    @property
    def model_version(self) -> str:
        """Version id of the model now serving (capbot.json's id, or the hub id)."""
        return self._current().version

    @property
    def engine(self) -> Any:
        """The engine now serving; for tools that need the model itself (evaluation, benchmarks)."""
        return self._current()

    def caption(self, images: Sequence[ImageInput], options: GenerationOptions | None = None) -> list[Caption]:
        """Caption each image, in order; raises `ImageError` for the first image that cannot be decoded."""
        options = options or self.default_options
        engine = self._current()
        started = time.perf_counter()
        rgb, decode_ms = [], []
        for image in images:
            t0 = time.perf_counter()
            rgb.append(self.decode(image))
            decode_ms.append((time.perf_counter() - t0) * 1000)
        outputs = engine.generate(rgb, options)
        total_ms = (time.perf_counter() - started) * 1000 / max(len(rgb), 1)
        return [
            Caption(out.text, engine.version, {"decode": ms, **out.timings_ms, "total": total_ms},
                    confidence=out.confidence, alternatives=out.alternatives)
            for out, ms in zip(outputs, decode_ms)
        ]

    def pixel_values(self, images: Sequence[ImageInput]) -> Any:
        """The tensor the serving model sees for `images` (the intake, then the model's preprocessing)."""
        return self._current().pixel_values([self.decode(image) for image in images])

    def decode(self, image: ImageInput) -> Image.Image:
        """The intake: an upright RGB image within this captioner's limits, or `ImageError`."""
        return decode_image(image, max_bytes=self.max_image_bytes, max_pixels=self.max_image_pixels)

    def reload(self, model: str | Path) -> str:
        """Load `model` and make it the serving model once loaded; returns its version.

        Loading happens outside the lock, so captioning continues on the old model meanwhile; a failed
        load raises and leaves the old model serving.
        """
        engine = self._load(model, device=self.device, dtype=self.dtype, batch_size=self.batch_size, **self._engine_args)
        with self._lock:
            previous, self._engine = self._engine.version, engine
        log.info("captioner model swapped", extra={"previous_version": previous, "version": engine.version})
        return engine.version

    def close(self) -> None:
        """Release the model (and its GPU memory); the captioner cannot caption afterwards."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None and engine.device.type == "cuda":
            import torch

            del engine
            torch.cuda.empty_cache()

    def _current(self) -> Any:
        with self._lock:
            if self._engine is None:
                raise RuntimeError("this captioner was closed")
            return self._engine
