"""Training sees the pixels serving sees: one decode-and-normalise path for every awkward kind of image.

Feedback images are raw user uploads, so a training loader that ignored EXIF orientation or transparency
would teach the model pictures rotated or recoloured relative to the ones it captions.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from inference.captioner import LocalCaptioner
from tests.specs import EXACT_GREEDY
from training.collate import CaptionCollator

ORIENTATION_TAG = 0x0112


def _asymmetric_rgb(width: int = 40, height: int = 20) -> Image.Image:
    """A picture whose every flip and rotation looks different: four coloured quadrants and a marker."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[: height // 2, : width // 2] = (220, 30, 30)
    pixels[: height // 2, width // 2:] = (30, 200, 40)
    pixels[height // 2:, : width // 2] = (30, 40, 220)
    pixels[height // 2:, width // 2:] = (240, 220, 30)
    pixels[1:4, 1:4] = (0, 0, 0)
    return Image.fromarray(pixels)


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _exif_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    return _encode(_asymmetric_rgb(), "JPEG", exif=exif, quality=95)


def _transparent_rgba() -> bytes:
    rgba = np.zeros((24, 24, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # transparent pixels that hold pure red: white when shown in a chat client
    rgba[6:18, 6:18] = (20, 120, 250, 255)
    return _encode(Image.fromarray(rgba), "PNG")


def _transparent_la() -> bytes:
    la = np.zeros((24, 24, 2), dtype=np.uint8)
    la[6:18, 6:18] = (90, 255)
    return _encode(Image.fromarray(la), "PNG")


def _palette_with_transparency() -> bytes:
    palette = Image.new("P", (24, 24), 0)
    palette.putpalette([0, 0, 0, 200, 40, 40, 40, 200, 60] + [0] * (256 * 3 - 9))
    palette.paste(1, (4, 4, 20, 20))
    palette.paste(2, (8, 8, 16, 16))
    return _encode(palette, "PNG", transparency=0)  # index 0 (black) is transparent


def _cmyk_jpeg() -> bytes:
    return _encode(_asymmetric_rgb().convert("CMYK"), "JPEG", quality=95)


def _sixteen_bit_png() -> bytes:
    ramp = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 60).astype(np.uint16)
    return _encode(Image.fromarray(ramp), "PNG")


def _grayscale_png() -> bytes:
    return _encode(_asymmetric_rgb().convert("L"), "PNG")


CASES = {
    **{f"exif-orientation-{n}": (lambda n=n: _exif_jpeg(n)) for n in range(1, 9)},
    "rgba-transparent": _transparent_rgba,
    "la-transparent": _transparent_la,
    "palette-transparent": _palette_with_transparency,
    "cmyk": _cmyk_jpeg,
    "16-bit": _sixteen_bit_png,
    "grayscale": _grayscale_png,
}
# Cases where decoding the file naively (Image.open(...).convert("RGB")) gives other pixels than the intake:
# the parity below would fail for these if training went back to such a loader.
NAIVE_DIFFERS = {f"exif-orientation-{n}" for n in range(2, 9)} | {"rgba-transparent", "la-transparent",
                                                                  "palette-transparent", "16-bit"}


@pytest.fixture(scope="module")
def captioner(tiny_model_dir):
    captioner = LocalCaptioner(tiny_model_dir, EXACT_GREEDY)
    yield captioner
    captioner.close()


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd_images")
    files = {}
    for name, make in CASES.items():
        path = root / f"{name}.img"
        path.write_bytes(make())
        files[name] = path
    return files


@pytest.mark.parametrize("name", sorted(CASES))
def test_training_pixels_equal_serving_pixels(captioner, image_files, name):
    path = image_files[name]
    served = captioner.pixel_values([path.read_bytes()])
    collator = CaptionCollator(captioner.engine.image_processor, captioner.engine.tokenizer)
    trained = collator.pixels([path])
    assert trained.dtype == served.dtype and trained.shape == served.shape
    assert torch.equal(trained, served)
    again = collator.pixels([path])  # from the collator's cache: still the same pixels
    assert torch.equal(again, served)


@pytest.mark.parametrize("name", sorted(NAIVE_DIFFERS))
def test_these_cases_differ_from_a_naive_loader(captioner, image_files, name):
    """Guards the parity test itself: each of these images decodes differently without the intake."""
    path = image_files[name]
    with Image.open(path) as image:
        naive = image.convert("RGB")
    processor = captioner.engine.image_processor
    naive_pixels = processor(images=[naive], return_tensors="pt")["pixel_values"]
    assert not torch.equal(naive_pixels, captioner.pixel_values([path.read_bytes()]))


def test_rotated_photo_is_upright_for_training_and_serving(captioner, image_files):
    """Orientation 6 (rotate 90 degrees clockwise to view): the stored 40x20 picture is seen as 20x40."""
    from inference.pixels import decode_image

    upright = decode_image(image_files["exif-orientation-6"])
    assert upright.size == (20, 40)
    assert upright.getpixel((10, 35))[0] < 100  # the black marker stored top-left is now top-right


def test_transparent_pixels_are_white_for_training(captioner, image_files):
    collator = CaptionCollator(captioner.engine.image_processor, captioner.engine.tokenizer)
    corner = collator.pixels([image_files["rgba-transparent"]])[0, :, 0, 0]
    assert torch.allclose(corner, torch.ones(3))  # white after ViT's [-1, 1] normalisation, not red


def test_unreadable_training_image_names_the_file(captioner, tmp_path):
    from inference.images import ImageError

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    collator = CaptionCollator(captioner.engine.image_processor, captioner.engine.tokenizer)
    with pytest.raises(ImageError) as err:
        collator.pixels([broken])
    assert err.value.reason == "not_image" and str(broken) in err.value.message
