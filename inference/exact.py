"""The exact engine of the ViT+GPT-2 family: the model in transformers, captions from plain `generate`.

The tokens a user of transformers gets from the same weights (tests/inference/test_engine.py), on the CPU
or a GPU, in the spec's dtype. `inference.generation` builds `generate`'s arguments and cleans its output.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from inference import ved
from inference.device import resolve_placement, resolve_threads
from inference.engine import EngineOutput
from inference.families import VISION_ENCODER_DECODER
from inference.generation import generate_captions
from inference.modeldir import set_token_ids, version_of
from inference.pixels import pixel_values
from inference.torch_engine import TorchEngine
from inference.types import GenerationOptions

log = logging.getLogger(__name__)


class ExactEngine(TorchEngine):
    """A loaded model, image processor and tokenizer on one device (an `inference.engine.Engine`)."""

    family = VISION_ENCODER_DECODER

    def __init__(self, model: Any, image_processor: Any, tokenizer: Any, *, version: str, batch_size: int = 8) -> None:
        super().__init__(model, version=version, batch_size=batch_size)
        set_token_ids(model, tokenizer)
        self.image_processor = image_processor
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, model_dir: Path, *, version: str | None = None, device: str = "auto", dtype: str = "auto",
             batch_size: int = 8, threads: int = 0) -> "ExactEngine":
        """Load the model directory `model_dir` (a local one: `inference.hub.model_directory`) onto `device`;
        `version` defaults to `inference.modeldir.version_of` the directory."""
        version = version or version_of(model_dir)
        placement = resolve_placement(device, dtype, purpose="serve")
        if threads and placement.device.type == "cpu":
            torch.set_num_threads(resolve_threads(threads))  # 0: leave torch's own choice (all cores) alone
        started = time.perf_counter()
        model = ved.load_model(model_dir, dtype=placement.weights)
        engine = cls(model.to(placement.device), ved.load_processor(model_dir), ved.load_tokenizer(model_dir),
                     version=version, batch_size=batch_size)
        log.info("model loaded", extra={"source": str(model_dir), "version": version, "device": str(placement.device),
                                        "dtype": str(placement.weights),
                                        "load_ms": round((time.perf_counter() - started) * 1000)})
        return engine

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Preprocess images into the model's input tensor on its device and dtype."""
        return pixel_values(self.image_processor, images).to(self.device, self.dtype)

    def _generate_batch(self, images: Sequence[Image.Image], options: GenerationOptions) -> list[EngineOutput]:
        t0 = time.perf_counter()
        pixels = self.pixel_values(images)
        t1 = time.perf_counter()
        generated = generate_captions(self.model, self.tokenizer, pixels, options)
        t2 = time.perf_counter()
        n = len(images)
        timings = {"preprocess": (t1 - t0) * 1000 / n, "generate": (t2 - t1) * 1000 / n}
        return [EngineOutput(g.text, g.token_ids, dict(timings), g.confidence, g.alternatives) for g in generated]
