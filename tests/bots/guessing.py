"""A `Captioner` that gives confidence and alternatives, for the bots' unsure wording and correction forms.

It names the dominant colour like `ColourCaptioner` after the engine's real intake (`load_image`, so a bad
image is refused with the intake's reason), is sure of red and unsure of everything else, and offers two
other guesses, as the engine's beam search would.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from inference.images import load_image
from inference.types import Caption, GenerationOptions, ImageInput
from tests.bots.captioners import ColourCaptioner

SURE, UNSURE = 0.9, 0.2


class GuessingCaptioner(ColourCaptioner):
    """'a red picture' at 90% confidence; any other colour at 20%, each with alternatives."""

    def caption(self, images: Sequence[ImageInput], options: GenerationOptions | None = None) -> list[Caption]:
        limit = (options or GenerationOptions()).num_alternatives
        plain = super().caption([load_image(image) for image in images], options)
        return [replace(c, confidence=SURE if "red" in c.text else UNSURE,
                        alternatives=_others(c.text)[:limit]) for c in plain]


def _others(text: str) -> tuple[str, ...]:
    colour = text.split()[1]
    return (f"a {colour} square", f"a {colour} painting")
