"""What the two engines that run a model in torch share (`inference.exact.ExactEngine`, ViT+GPT-2, and
`inference.family_engine.FamilyEngine`, the other families): the model on its device, micro-batching and
release. Each subclass captions one batch in `_generate_batch`."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from PIL import Image

from inference.device import EngineConfigError
from inference.engine import EngineOutput
from inference.generation import in_batches
from inference.types import GenerationOptions


class TorchEngine:
    """A torch model in eval mode on one device and dtype, captioning in batches of `batch_size`."""

    def __init__(self, model: Any, *, version: str, batch_size: int = 8) -> None:
        if batch_size < 1:
            raise EngineConfigError(f"batch size must be at least 1, got {batch_size}", reason="bad_batch_size")
        self.model = model.eval()
        self.version = version
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype

    @property
    def device_type(self) -> str:
        """The device's kind: "cpu" or "cuda"."""
        return self.device.type

    def generate(self, images: Sequence[Image.Image], options: GenerationOptions) -> list[EngineOutput]:
        """Caption RGB images in batches of `batch_size`, in order."""
        return in_batches(images, self.batch_size, options, self._checked_batch)

    def release(self) -> None:
        """Drop the model; on a GPU, hand its memory back to the driver."""
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _checked_batch(self, images: Sequence[Image.Image], options: GenerationOptions) -> list[EngineOutput]:
        if self.model is None:
            raise RuntimeError("this engine was released")
        return self._generate_batch(images, options)

    def _generate_batch(self, images: Sequence[Image.Image], options: GenerationOptions) -> list[EngineOutput]:
        raise NotImplementedError
