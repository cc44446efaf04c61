"""What an engine is: a loaded model that turns decoded RGB images into caption texts.

`inference.captioner.LocalCaptioner` holds one engine at a time and swaps it on a model change; which
engine it gets follows the model's family and the spec's engine mode (`inference.captioner.load_engine`).
Today's engines are the ViT+GPT-2 family's exact one (`inference.exact`, plain `generate`) and its CPU fast
path (`inference.fast.engine`), and the exact one of the BLIP, GIT, Florence-2 and SmolVLM families
(`inference.family_engine`); every engine implements `Engine`, and callers use nothing else of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

from PIL import Image

from inference.types import GenerationOptions


@dataclass(frozen=True)
class EngineOutput:
    """One caption text as an engine returns it, with the time its batch spent per image (batch time / size)."""

    text: str
    token_ids: list[int]  # as the search returned them: decoder start first, right-padded to the batch's longest
    timings_ms: dict[str, float] = field(default_factory=dict)  # {"preprocess": .., "generate": ..}
    confidence: float = 0.0  # see inference.confidence
    alternatives: tuple[str, ...] = ()


@runtime_checkable
class Engine(Protocol):
    """A model loaded for captioning."""

    family: str  # the model family (`inference.families`)
    version: str  # capbot.json's version id, or the hub id or directory the model came from
    device_type: str  # "cpu" or "cuda": what per-device defaults follow (`inference.views.views_for`)

    def generate(self, images: Sequence[Image.Image], options: GenerationOptions) -> list[EngineOutput]:
        """Caption decoded RGB images, in order, in batches of the engine's size."""
        ...

    def pixel_values(self, images: Sequence[Image.Image]) -> Any:
        """The model's input for decoded RGB images (a tensor or an array, as the engine runs)."""
        ...

    def release(self) -> None:
        """Free the model's memory (a GPU's included); the engine cannot caption afterwards."""
        ...
