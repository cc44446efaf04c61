"""Turn (image, caption) examples into model batches: pixel values through the serving image path
(`inference.pixels`), labels from the tokenizer.

Labels are the caption's tokens followed by EOS, right-padded with -100 so the loss ignores padding.
GPT-2 style tokenizers often use one id for both pad and EOS, so the mask is built from each caption's
length, never by comparing ids with `pad_token_id` (which would also hide the EOS the model must learn).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from inference.pixels import prepare_pixels

IGNORE_INDEX = -100  # the cross-entropy ignore_index used by transformers' loss


def caption_labels(tokenizer: Any, captions: Sequence[str], max_length: int) -> torch.Tensor:
    """Token ids of each caption plus EOS, truncated to `max_length` (EOS kept), padded with -100."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token_id; captions could never end")
    encoded = tokenizer(list(captions), add_special_tokens=False)["input_ids"]
    rows = [ids[: max_length - 1] + [eos] for ids in encoded]
    width = max(len(r) for r in rows)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, row in enumerate(rows):
        labels[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return labels


@dataclass
class CaptionCollator:
    """Callable for a DataLoader: a list of (image path or PIL image, caption) -> model inputs.

    Pixel values of up to `cache_size` image paths are kept in memory, so small datasets (synthetic,
    feedback) are decoded and resized once rather than every epoch.
    """

    image_processor: Any
    tokenizer: Any
    max_length: int = 32  # tokens per caption including EOS
    cache_size: int = 20_000  # images; 0 disables the cache
    _cache: "OrderedDict[str, torch.Tensor]" = field(default_factory=OrderedDict, repr=False)

    def pixels(self, images: Sequence[str | Path | Image.Image]) -> torch.Tensor:
        """Pixel values (N, C, H, W) of the images, from the cache where possible."""
        out: list[torch.Tensor | None] = [self._cache.get(str(im)) if not isinstance(im, Image.Image) else None
                                          for im in images]
        missing = [i for i, t in enumerate(out) if t is None]
        if missing:
            # The serving intake, not a plain Image.open: feedback images are raw uploads (EXIF-rotated,
            # transparent, CMYK...), and the model must learn from the pictures it will be shown.
            values = prepare_pixels(self.image_processor, [images[i] for i in missing])
            for i, tensor in zip(missing, values):
                out[i] = tensor
                if self.cache_size and not isinstance(images[i], Image.Image):
                    self._remember(str(images[i]), tensor)
        return torch.stack(out)  # type: ignore[arg-type]

    def _remember(self, key: str, tensor: torch.Tensor) -> None:
        self._cache[key] = tensor
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def __call__(self, batch: Sequence[tuple[str | Path | Image.Image, str]]) -> dict[str, torch.Tensor]:
        images, captions = zip(*batch)
        labels = caption_labels(self.tokenizer, captions, self.max_length)
        # Decoder input i is label i-1 (after the start token), so input i is real exactly when label i is.
        return {"pixel_values": self.pixels(images), "labels": labels, "decoder_attention_mask": labels.ne(IGNORE_INDEX).long()}
