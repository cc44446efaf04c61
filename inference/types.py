"""The captioning contract every caller codes against: options in, `Caption` dataclasses out.

Callers (bots, web, CLI, evaluation) see only `Captioner`; the local engine and the Modal class are
interchangeable implementations, and the engine's internals may change freely behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, Union, runtime_checkable

from PIL import Image

ImageInput = Union[bytes, Image.Image]


@dataclass(frozen=True)
class GenerationOptions:
    """How to decode and score a caption. The defaults are plain greedy search; what a captioner serves
    without options of its own is its spec's (`inference.spec.SERVED_OPTIONS` by default)."""

    num_beams: int = 1  # 1 = greedy
    max_new_tokens: int = 24
    no_repeat_ngram_size: int = 3  # 0 disables; on by default because the base model repeats phrases
    num_alternatives: int = 0  # other captions besides the best, from the beam search's n-best (needs num_beams > 1)
    # views of the image (`inference.views`) the caption is also scored on for its confidence; 0 = the image
    # only. Each costs an encoder pass and a teacher-forced pass of the caption. None: the engine's device
    # decides (`inference.views.views_for`: 4 on a GPU, 0 on the CPU), what serving uses unless configured.
    confidence_views: int | None = 0


@dataclass(frozen=True)
class Caption:
    """One caption for one image, with the version of the model that wrote it."""

    text: str
    model_version: str
    timings_ms: dict[str, float] = field(default_factory=dict)  # e.g. {"preprocess": .., "generate": .., "total": ..}
    confidence: float | None = None  # in [0, 1], from the caption's token probabilities (`inference.confidence`)
    alternatives: tuple[str, ...] = ()  # up to `num_alternatives` other captions, best first, none equal to `text`


@runtime_checkable
class Captioner(Protocol):
    """Anything that turns images into captions."""

    @property
    def model_version(self) -> str:
        """Id of the model version currently serving."""
        ...

    def caption(self, images: Sequence[ImageInput], options: GenerationOptions | None = None) -> list[Caption]:
        """Caption each image, in order. Raises `inference.images.ImageError` for an undecodable image."""
        ...
