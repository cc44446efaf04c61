"""The decode budget admits work by megapixels, and the intake decodes large pictures at a reduced size:
JPEGs at a DCT scale (draft mode), other formats in full and then box-reduced, always within the budget."""

from __future__ import annotations

import io
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.decode_budget import DecodeBudget
from inference.images import WORKING_PIXELS, load_image


class RecordingBudget(DecodeBudget):
    """A real budget that also remembers what each decode asked for."""

    def __init__(self, capacity_pixels: int) -> None:
        super().__init__(capacity_pixels)
        self.asked: list[int] = []

    @contextmanager
    def hold(self, pixels):
        self.asked.append(pixels)
        with super().hold(pixels):
            yield


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def test_work_is_admitted_by_megapixels_and_a_large_piece_alone():
    budget = DecodeBudget(10)
    peak, active, lock = [0], [0], threading.Lock()

    def work(pixels: int) -> None:
        with budget.hold(pixels):
            with lock:
                active[0] += pixels
                peak[0] = max(peak[0], active[0])
            time.sleep(0.05)
            with lock:
                active[0] -= pixels

    threads = [threading.Thread(target=work, args=(p,)) for p in (4, 4, 4, 4, 30, 3, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert peak[0] == 30  # the oversize piece ran, alone (4 + 4 < 10 ran together, never more than 10 besides)
    assert budget.held_pixels == 0


def test_the_next_in_line_is_not_overtaken_by_smaller_work():
    budget = DecodeBudget(10)
    order: list[str] = []
    with budget.hold(8):
        large = threading.Thread(target=lambda: budget.hold(9).__enter__() or order.append("large"))
        large.start()
        time.sleep(0.1)
        small = threading.Thread(target=lambda: budget.hold(1).__enter__() or order.append("small"))
        small.start()
        time.sleep(0.1)
        assert order == []  # 1 pixel would fit beside the 8 held, but the large one came first
    large.join(5)
    small.join(5)
    assert order == ["large", "small"]


def test_a_large_jpeg_decodes_at_a_reduced_scale():
    photo = Image.radial_gradient("L").resize((6000, 4000)).convert("RGB")
    budget = RecordingBudget(50_000_000)
    decoded = load_image(_encoded(photo, "JPEG", quality=85), budget=budget)
    assert budget.asked == [1500 * 1000]  # the 1/4 DCT scale, not 24 megapixels
    assert decoded.mode == "RGB" and decoded.width * decoded.height <= WORKING_PIXELS
    assert decoded.width / decoded.height == pytest.approx(1.5, rel=0.01)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L", "I;16"])
def test_a_large_png_is_decoded_within_the_budget_and_shrunk_keeping_its_look(mode):
    left_half = Image.new("RGB", (3000, 2000), (200, 30, 30))
    image = Image.new("RGB", (6000, 2000), (30, 30, 200))
    image.paste(left_half)
    if mode == "RGBA":  # the right half fully transparent: shown on white
        image = image.convert("RGBA")
        image.paste((0, 0, 0, 0), (3000, 0, 6000, 2000))
    elif mode != "RGB":
        image = image.convert("L").convert(mode) if mode != "P" else image.convert("P")
    budget = RecordingBudget(50_000_000)
    decoded = load_image(_encoded(image, "PNG"), budget=budget)
    assert budget.asked == [12_000_000]
    assert decoded.mode == "RGB" and decoded.size == (2000, 667) and decoded.width * decoded.height <= WORKING_PIXELS
    pixels = np.asarray(decoded).astype(int)
    expected = {"RGB": ((200, 30, 30), (30, 30, 200)), "RGBA": ((200, 30, 30), (255, 255, 255)),
                "P": ((200, 30, 30), (30, 30, 200))}
    left, right = pixels[300, 500], pixels[300, 1500]
    if mode in expected:
        assert np.abs(left - expected[mode][0]).max() <= 6 and np.abs(right - expected[mode][1]).max() <= 6
    else:  # grey versions of the two halves, still telling them apart
        assert left[0] == left[1] == left[2] and abs(int(left[0]) - int(right[0])) > 10


def test_images_within_the_working_size_are_decoded_exactly_as_before():
    import skimage

    photo_bytes = (Path(skimage.__file__).parent / "data" / "chelsea.png").read_bytes()
    decoded = load_image(photo_bytes)
    assert np.array_equal(np.asarray(decoded), np.asarray(Image.open(io.BytesIO(photo_bytes)).convert("RGB")))
