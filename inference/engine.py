"""The model engine: load a ViT+GPT-2 checkpoint once, then turn batches of RGB images into caption texts.

Only `inference.captioner` uses this module; callers code against `inference.types.Captioner`, so the
internals here (preprocessing, batching, decoding) can be replaced by faster ones without touching them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer, VisionEncoderDecoderModel

from inference.device import EngineConfigError, resolve_placement
from inference.generation import EngineOutput, generate_captions, in_batches
from inference.hub import ModelLoadError, load_pretrained
from inference.modeldir import has_metadata, load_metadata, set_token_ids
from inference.pixels import pixel_values
from inference.types import GenerationOptions

log = logging.getLogger(__name__)

class CaptionEngine:
    """A loaded model, image processor and tokenizer on one device."""

    def __init__(self, model: Any, image_processor: Any, tokenizer: Any, *, version: str, batch_size: int = 8) -> None:
        if batch_size < 1:
            raise EngineConfigError(f"batch size must be at least 1, got {batch_size}", reason="bad_batch_size")
        set_token_ids(model, tokenizer)
        self.model = model.eval()
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.version = version
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype

    @classmethod
    def load(cls, source: str | Path, *, device: str = "auto", dtype: str = "auto", batch_size: int = 8) -> "CaptionEngine":
        """Load from a hub id or a local model directory (one code path); the version is capbot.json's id
        when the directory has one, else the source itself."""
        placement = resolve_placement(device, dtype, purpose="serve")
        torch_device, torch_dtype = placement.device, placement.weights
        started = time.perf_counter()
        model = load_pretrained(AutoModelForImageTextToText.from_pretrained, source, "model", dtype=torch_dtype)
        if not isinstance(model, VisionEncoderDecoderModel):
            raise ModelLoadError(f"{source} is a {type(model).__name__}, not a VisionEncoderDecoderModel (ViT + GPT-2)", reason="invalid")
        processor = load_pretrained(AutoImageProcessor.from_pretrained, source, "image processor")
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, source, "tokenizer")
        version = load_metadata(source).version if has_metadata(source) else str(source)
        engine = cls(model.to(torch_device), processor, tokenizer, version=version, batch_size=batch_size)
        log.info("model loaded", extra={"source": str(source), "version": version, "device": str(torch_device),
                                        "dtype": str(torch_dtype), "load_ms": round((time.perf_counter() - started) * 1000)})
        return engine

    def generate(self, images: Sequence[Image.Image], options: GenerationOptions) -> list[EngineOutput]:
        """Caption RGB images in batches of `batch_size`, in order."""
        return in_batches(images, self.batch_size, options, self._generate_batch)

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
