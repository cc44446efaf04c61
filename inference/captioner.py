"""`LocalCaptioner`: the in-process `Captioner`, built from a `CaptionerSpec`, with a model swap that never
drops a request; `load_engine`: which engine a model and a spec get."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image

from inference.device import resolve_mode, resolve_threads
from inference.engine import Engine
from inference.families import VISION_ENCODER_DECODER, family_of
from inference.hub import looks_like_path, model_directory
from inference.modeldir import version_of
from inference.pixels import decode_image
from inference.spec import CaptionerSpec
from inference.types import Caption, GenerationOptions, ImageInput

log = logging.getLogger(__name__)

EngineLoader = Callable[[str | Path, CaptionerSpec], Engine]


def load_engine(model: str | Path, spec: CaptionerSpec) -> Engine:
    """The engine for `model` (hub id or directory) under `spec`: the model's family (`inference.families`),
    then the spec's engine mode (`inference.device.resolve_mode`): the exact engine (plain `generate`) or
    the CPU fast path (int8 ONNX Runtime graphs, own decode loop). The BLIP, GIT, Florence-2 and SmolVLM
    families run on `inference.family_engine.FamilyEngine` (plain `generate`, the spec's prompt), also where
    the fast mode was chosen (said once in the log). Only the exact engines import torch and transformers'
    models. The version is capbot.json's id when the directory has one, else `model` itself."""
    model_dir = model_directory(model)
    family = family_of(model_dir, spec.family)  # a model of an architecture capbot has no family for is refused here
    version = version_of(model_dir, model)
    mode = resolve_mode(spec.precision, spec.device)
    if family != VISION_ENCODER_DECODER:
        if mode == "fast":
            _note_no_fast_path(family)
        from inference.family_engine import FamilyEngine

        return FamilyEngine.load(model_dir, family, version=version, device=spec.device, dtype=spec.dtype,
                                 batch_size=spec.batch_size, threads=spec.threads, prompt=spec.prompt)
    if spec.prompt:
        from inference.family_models import caption_prompt

        caption_prompt(family, None, spec.prompt)  # ViT+GPT-2 takes no prompt: refused, not ignored
    if mode == "fast":
        from inference.fast.engine import FastEngine

        return FastEngine.load(model_dir, version=version, batch_size=spec.batch_size,
                               threads=resolve_threads(spec.threads), cache_dir=spec.cache_dir,
                               beside=looks_like_path(str(model)))
    from inference.exact import ExactEngine

    return ExactEngine.load(model_dir, version=version, device=spec.device, dtype=spec.dtype,
                            batch_size=spec.batch_size, threads=spec.threads)


_NOTED_NO_FAST_PATH: set[str] = set()


def _note_no_fast_path(family: str) -> None:
    """Say once per family that its models run on the exact engine where the fast one was asked for."""
    if family not in _NOTED_NO_FAST_PATH:
        _NOTED_NO_FAST_PATH.add(family)
        log.info("no fast engine for this model family yet: captioning with the exact engine (plain generate)",
                 extra={"family": family})


class LocalCaptioner:
    """Captions images with a model loaded in this process (CPU or GPU), as `spec` says.

    `model` is a hub id or a model directory. `reload` swaps in another model, under the same spec, while
    requests keep being served: a request holds the engine it started with, so an in-flight batch finishes
    on the old model. A caption call without options gets `spec.options`.
    """

    def __init__(self, model: str | Path, spec: CaptionerSpec = CaptionerSpec(), *,
                 engine_loader: EngineLoader = load_engine) -> None:
        self.spec = spec
        self._load = engine_loader
        self._lock = threading.Lock()
        self._engine: Engine | None = self._load(model, spec)

    @property
    def default_options(self) -> GenerationOptions:
        """What a caption call without options of its own gets: the spec's."""
        return self.spec.options

    @property
    def max_image_bytes(self) -> int:
        """The intake's size limit in bytes."""
        return self.spec.max_image_bytes

    @property
    def max_image_pixels(self) -> int:
        """The intake's limit on width x height."""
        return self.spec.max_image_pixels

    @property
    def model_version(self) -> str:
        """Version id of the model now serving (capbot.json's id, or the hub id)."""
        return self._current().version

    @property
    def engine(self) -> Engine:
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
        engine = self._load(model, self.spec)
        with self._lock:
            previous, self._engine = self._engine.version, engine
        log.info("captioner model swapped", extra={"previous_version": previous, "version": engine.version})
        return engine.version

    def close(self) -> None:
        """Release the model (and its GPU memory); the captioner cannot caption afterwards."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.release()

    def _current(self) -> Engine:
        with self._lock:
            if self._engine is None:
                raise RuntimeError("this captioner was closed")
            return self._engine
