"""Turn (image, caption) examples into a training batch of a non-ViT+GPT-2 family (issue 24).

The image goes through the serving intake (`inference.pixels.decode_image`: EXIF orientation, transparency,
odd modes) and then through the very call serving makes for the family (`inference.family_models.model_inputs`:
the family's own processor, its prompt), so the model learns from the pixels and prompt it is shown when it
captions. The caption becomes the family's targets (`training.family_labels`).

`training.collate.CaptionCollator` stays the ViT+GPT-2 family's collator (labels from its tokenizer, pixels
from `inference.pixels`, which computes that processor's arithmetic bit for bit).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from inference.families import BLIP, GIT
from inference.pixels import decode_image
from inference.family_models import model_inputs
from training.family_labels import TextIds, caption_targets

ImageItem = str | Path | Image.Image

# Families whose processor output for an image is its pixel tensor alone, the same whatever else is in the
# batch: those rows can be cached per image file. (Florence-2's and SmolVLM's inputs hold the prompt too, and
# SmolVLM's tiles vary per image, so their batches go through the processor each time.)
_PIXELS_ONLY = (BLIP, GIT)


@dataclass
class FamilyCollator:
    """Callable for a DataLoader: a list of (image path or PIL image, caption) -> the family's model inputs
    with `labels`. Pixel rows of up to `cache_size` image files are kept for BLIP and GIT (see `_PIXELS_ONLY`)."""

    family: str
    processor: Any  # the family's processor (`inference.family_models.load_processor`)
    ids: TextIds  # start, end and padding ids (`training.family_labels.text_ids`)
    max_length: int = 32  # tokens per caption including its end token
    cache_size: int = 20_000  # image files; 0 disables the cache
    _cache: "OrderedDict[str, torch.Tensor]" = field(default_factory=OrderedDict, repr=False)

    def inputs(self, images: Sequence[ImageItem]) -> dict[str, torch.Tensor]:
        """The model's inputs to caption `images`, exactly as serving builds them (pixels, and the prompt)."""
        if self.family not in _PIXELS_ONLY:
            return model_inputs(self.family, self.processor, [decode_image(i) for i in images])
        return {"pixel_values": self._cached_pixels(images)}

    def pixels(self, images: Sequence[ImageItem]) -> torch.Tensor:
        """The pixel values of `images` (what the image parity test compares with serving's)."""
        return self.inputs(images)["pixel_values"]

    def __call__(self, batch: Sequence[tuple[ImageItem, str]]) -> dict[str, torch.Tensor]:
        images, captions = zip(*batch)
        inputs = self.inputs(images)
        targets = caption_targets(self.family, self.processor, captions, self.ids, max_length=self.max_length,
                                  prompt_inputs=inputs)
        return {**inputs, **targets}

    def _cached_pixels(self, images: Sequence[ImageItem]) -> torch.Tensor:
        rows: list[torch.Tensor | None] = [None if isinstance(i, Image.Image) else self._cache.get(str(i)) for i in images]
        missing = [i for i, row in enumerate(rows) if row is None]
        if missing:
            values = model_inputs(self.family, self.processor, [decode_image(images[i]) for i in missing])["pixel_values"]
            for i, row in zip(missing, values):
                rows[i] = row
                if self.cache_size and not isinstance(images[i], Image.Image):
                    self._cache[str(images[i])] = row
                    if len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
        return torch.stack(rows)  # type: ignore[arg-type]
