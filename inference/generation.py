"""Pixels to caption text: the one place that builds `generate`'s arguments and cleans what it returns.

The engine (serving, `capbot caption`, evaluation through a captioner) and training's sample predictions
both call `generate_captions`, so a caption scored during training is produced exactly as a served one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from inference.device import EngineConfigError
from inference.types import GenerationOptions


@dataclass(frozen=True)
class GeneratedCaption:
    """One generated caption: clean text and the raw token ids."""

    text: str
    token_ids: list[int]  # as generate returned them: decoder start first, right-padded to the batch's longest


def generate_captions(model: Any, tokenizer: Any, pixel_values: torch.Tensor,
                      options: GenerationOptions) -> list[GeneratedCaption]:
    """Caption a batch of preprocessed images with `model.generate` (no gradients, deterministic)."""
    check_options(options)
    with torch.inference_mode():
        ids = model.generate(pixel_values=pixel_values, **generate_kwargs(options))
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    return [GeneratedCaption(clean_caption(text), row) for text, row in zip(texts, ids.tolist())]


def generate_kwargs(options: GenerationOptions) -> dict[str, Any]:
    """The `generate` arguments for `options`; deterministic (no sampling) whatever the checkpoint's config says."""
    return {
        "num_beams": options.num_beams,
        "max_new_tokens": options.max_new_tokens,
        "no_repeat_ngram_size": options.no_repeat_ngram_size,
        "do_sample": False,
        "use_cache": True,  # a model saved mid-training may carry use_cache=False (gradient checkpointing)
    }


def clean_caption(text: str) -> str:
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
