"""The model engine: load a ViT+GPT-2 checkpoint once, then turn batches of RGB images into caption texts.

Only `inference.captioner` uses this module; callers code against `inference.types.Captioner`, so the
internals here (preprocessing, batching, decoding) can be replaced by faster ones without touching them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer, VisionEncoderDecoderModel

from capbot.errors import UserError
from inference.hub import ModelLoadError, load_pretrained
from inference.modeldir import has_metadata, load_metadata, set_token_ids
from inference.types import GenerationOptions

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class EngineConfigError(UserError):
    """A device, dtype or generation option the engine cannot honour."""


@dataclass(frozen=True)
class EngineOutput:
    """One caption text with the time its batch spent per image (batch time / batch size)."""

    text: str
    token_ids: list[int]  # as generate returned them: decoder start first, right-padded to the batch's longest
    timings_ms: dict[str, float] = field(default_factory=dict)  # {"preprocess": .., "generate": ..}


def resolve_device(device: str) -> torch.device:
    """`auto` means cuda when a GPU is visible, else cpu; asking for cuda without one is a user error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EngineConfigError("device 'cuda' was requested but no CUDA GPU is available; use --device cpu", reason="no_gpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise EngineConfigError(f"unknown device {device!r}; use auto, cpu or cuda", reason="bad_device") from exc


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` means bf16 weights on a GPU that supports them (fast, same quality), fp32 elsewhere.

    On CPU fp32 stays the default: bf16 is faster only on CPUs with AMX, and fp32 matches reference outputs.
    """
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise EngineConfigError(f"unknown dtype {dtype!r}; use auto, {', '.join(_DTYPES)}", reason="bad_dtype") from None


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
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
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
        check_options(options)
        outputs: list[EngineOutput] = []
        for start in range(0, len(images), self.batch_size):
            outputs.extend(self._generate_batch(images[start:start + self.batch_size], options))
        return outputs

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Preprocess images into the model's input tensor on its device and dtype."""
        batch = self.image_processor(images=list(images), return_tensors="pt").pixel_values
        return batch.to(self.device, self.dtype)

    def _generate_batch(self, images: Sequence[Image.Image], options: GenerationOptions) -> list[EngineOutput]:
        t0 = time.perf_counter()
        pixels = self.pixel_values(images)
        t1 = time.perf_counter()
        with torch.inference_mode():
            ids = self.model.generate(pixels, **generate_kwargs(options))
        t2 = time.perf_counter()
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        n = len(images)
        timings = {"preprocess": (t1 - t0) * 1000 / n, "generate": (t2 - t1) * 1000 / n}
        return [EngineOutput(one_line(text), row, dict(timings)) for text, row in zip(texts, ids.tolist())]


def generate_kwargs(options: GenerationOptions) -> dict[str, Any]:
    """The `generate` arguments for `options`; deterministic (no sampling) whatever the checkpoint's config says."""
    return {
        "num_beams": options.num_beams,
        "max_new_tokens": options.max_new_tokens,
        "no_repeat_ngram_size": options.no_repeat_ngram_size,
        "do_sample": False,
    }


def one_line(text: str) -> str:
    """A caption as one line: runs of whitespace (newlines, tabs, CRs an untrained model may emit) become one space."""
    return " ".join(text.split())


def check_options(options: GenerationOptions) -> None:
    """Reject options `generate` would fail on, with a message naming the option."""
    if options.num_beams < 1:
        raise EngineConfigError(f"beams must be at least 1, got {options.num_beams}", reason="bad_options")
    if options.max_new_tokens < 1:
        raise EngineConfigError(f"max new tokens must be at least 1, got {options.max_new_tokens}", reason="bad_options")
    if options.no_repeat_ngram_size < 0:
        raise EngineConfigError(f"no-repeat n-gram size must be 0 (off) or more, got {options.no_repeat_ngram_size}", reason="bad_options")

