"""Small `Captioner` implementations for bot tests where timing matters (slow, gated, failing).

They implement the real `inference.types.Captioner` protocol and pass every image through the real
intake (`inference.images.load_image`, as `LocalCaptioner` does before generating), so a bad image raises
the product's `ImageError` and the bots' refusal path runs; only the neural network is left out.
"""

from __future__ import annotations

import threading
import time
from typing import Sequence

from PIL import Image

from inference.images import load_image
from inference.types import Caption, GenerationOptions, ImageInput

_COLOURS = {"red": (200, 40, 40), "green": (40, 160, 60), "blue": (40, 60, 200), "white": (250, 250, 250)}


class ColourCaptioner:
    """Names the dominant colour: 'a red picture'. `delay_s` slows each call; `gate` holds calls until set."""

    def __init__(self, version: str = "stub-v1", delay_s: float = 0.0, gate: threading.Event | None = None) -> None:
        self._version = version
        self.delay_s = delay_s
        self.gate = gate
        self.calls = 0
        self._lock = threading.Lock()

    @property
    def model_version(self) -> str:
        return self._version

    def caption(self, images: Sequence[ImageInput], options: GenerationOptions | None = None) -> list[Caption]:
        with self._lock:
            self.calls += 1
        if self.gate is not None:
            self.gate.wait(30)
        time.sleep(self.delay_s)
        decoded = [load_image(img) for img in images]  # refuses the whole batch, like the engine
        return [Caption(text=f"a {_dominant(img)} picture", model_version=self._version) for img in decoded]


class BrokenCaptioner(ColourCaptioner):
    """Fails like a bug would (not a user error)."""

    def caption(self, images, options=None):  # noqa: ANN001
        raise RuntimeError("CUDA out of memory (simulated)")


def _dominant(rgb: Image.Image) -> str:
    r, g, b = rgb.resize((1, 1)).getpixel((0, 0))
    return min(_COLOURS, key=lambda name: sum((a - c) ** 2 for a, c in zip((r, g, b), _COLOURS[name])))
