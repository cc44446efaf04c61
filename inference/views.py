"""Views of a model input that name the same things: the picture moved by a couple of pixels.

Confidence (`inference.confidence`) scores a caption on the image and on these views. A model sure of
a caption for the wrong reason (the fixture's small circles read as squares from how their edges fall on
the patch grid) often loses that certainty when the picture moves by a fraction of a patch; a caption
the model has actually seen holds. Two pixels of the model's input is an eighth of a ViT patch of 16, the
patch of both presets; larger moves, flips, zooms and added noise separated right from wrong captions
less well on the synthetic shapes (measured, see docs/web.md).

The views work on the model input array (N, C, H, W), a NumPy array or a torch tensor alike, so both
engine paths make the same pixels. The edge pixels repeat into the uncovered strip.
"""

from __future__ import annotations

from typing import Any

SHIFT_PX = 2
# right, down, left, up: the first `count` of them are used
DIRECTIONS = ((SHIFT_PX, 0), (0, SHIFT_PX), (-SHIFT_PX, 0), (0, -SHIFT_PX))
MAX_VIEWS = len(DIRECTIONS)
# What `confidence_views=None` (the serving default) means per device. On a GPU the views' encoder passes and
# the one teacher-forced pass cost little. On the CPU each view is one more full encoder pass: measured on
# the full-size model's fast path, 3 beams, 0.46-0.76 s a caption without views against 1.57-2.00 s with 4
# (2026-12-02, docs/web.md), so the CPU default keeps the single pass.
DEFAULT_VIEWS = {"cuda": MAX_VIEWS}


def views_for(requested: int | None, device_type: str) -> int:
    """The number of confidence views to score on: `requested`, or when None the device's default
    (`DEFAULT_VIEWS`: 4 on a GPU, 0 elsewhere)."""
    return DEFAULT_VIEWS.get(device_type, 0) if requested is None else requested


def shifted(pixels: Any, dx: int, dy: int) -> Any:
    """`pixels` (…, H, W) moved `dx` pixels right and `dy` down, the edges repeated into the gap."""
    height, width = pixels.shape[-2:]
    rows = [min(max(i - dy, 0), height - 1) for i in range(height)]
    cols = [min(max(j - dx, 0), width - 1) for j in range(width)]
    return pixels[..., rows, :][..., cols]


def confidence_views(pixels: Any, count: int) -> list[Any]:
    """The first `count` (0 to `MAX_VIEWS`) shifted copies of the batch `pixels`, one array per direction."""
    if not 0 <= count <= MAX_VIEWS:
        raise ValueError(f"confidence views must be 0 to {MAX_VIEWS}, got {count}")
    return [shifted(pixels, dx, dy) for dx, dy in DIRECTIONS[:count]]
