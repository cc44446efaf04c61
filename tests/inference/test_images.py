"""Image intake: every odd mode becomes upright RGB; every bad input gets its own specific `ImageError`."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import skimage
from PIL import Image

from inference.images import ImageError, load_image

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
WHITE, RED, BLUE = (255, 255, 255), (255, 0, 0), (0, 0, 255)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` pixels but carries almost no data (a decompression bomb's header)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def rgb_at(image: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    return tuple(image.getpixel((x, y)))


@pytest.mark.parametrize("name", ["astronaut.png", "rocket.jpg", "camera.png", "logo.png", "horse.png",
                                  "no_time_for_that_tiny.gif", "multipage.tif", "hubble_deep_field.jpg"])
def test_real_files_from_skimage_become_rgb(name):
    data = (SKIMAGE_DATA / name).read_bytes()
    original = Image.open(io.BytesIO(data))
    image = load_image(data)
    assert image.mode == "RGB" and image.size == original.size


def test_grayscale_keeps_its_values():
    data = (SKIMAGE_DATA / "camera.png").read_bytes()
    grey = np.asarray(Image.open(io.BytesIO(data)))
    rgb = np.asarray(load_image(data))
    assert (rgb[..., 0] == grey).all() and (rgb[..., 2] == grey).all()


@pytest.mark.parametrize("mode,transparent", [("RGBA", (0, 0, 0, 0)), ("LA", (0, 0))])
def test_transparent_pixels_are_composited_on_white(mode, transparent):
    opaque = (255, 0, 0, 255) if mode == "RGBA" else (0, 255)
    image = Image.new(mode, (10, 10), transparent)
    image.paste(Image.new(mode, (5, 10), opaque), (0, 0))
    out = load_image(encode(image, "PNG"))
    assert out.mode == "RGB"
    assert rgb_at(out, 8, 5) == WHITE
    assert rgb_at(out, 2, 5) == (RED if mode == "RGBA" else (0, 0, 0))


def test_palette_with_transparency_is_composited_on_white():
    image = Image.new("P", (10, 10), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 0 black (made transparent), 1 red
    image.paste(1, (0, 0, 5, 10))
    out = load_image(encode(image, "GIF", transparency=0))
    assert rgb_at(out, 8, 5) == WHITE and rgb_at(out, 2, 5) == RED


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    out = load_image(encode(cmyk, "JPEG", quality=95))
    r, g, b = rgb_at(out, 8, 8)
    assert out.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_16_bit_grayscale_is_scaled_not_clipped():
    values = np.array([[0, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    image = Image.fromarray(values)  # mode I;16
    assert image.mode == "I;16"
    for data in (image, encode(image, "PNG")):  # PNG reopens as mode I
        out = load_image(data)
        assert [rgb_at(out, x, 0)[0] for x in range(3)] == [0, 128, 255]


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert rgb_at(load_image(buf.getvalue()), 4, 4) == RED


@pytest.mark.parametrize("orientation,top", [(1, None), (6, RED), (8, BLUE), (3, None)])
def test_exif_orientation_is_applied(orientation, top):
    image = Image.new("RGB", (40, 20), RED)
    image.paste(Image.new("RGB", (20, 20), BLUE), (20, 0))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = load_image(encode(image, "JPEG", quality=95, exif=exif))
    if orientation in (1, 3):
        assert out.size == (40, 20)
        left = rgb_at(out, 5, 10)
        assert (left[0] > 200) == (orientation == 1)  # 180 degrees puts blue on the left
    else:
        assert out.size == (20, 40)  # rotated a quarter turn: the left half is on top for 6, bottom for 8
        r, g, b = rgb_at(out, 10, 5)
        assert (r > 200 and b < 60) if top == RED else (b > 200 and r < 60)


def test_bad_inputs_get_specific_reasons():
    png = encode(Image.new("RGB", (64, 64), RED), "PNG")
    photo = (SKIMAGE_DATA / "rocket.jpg").read_bytes()
    photo_png = (SKIMAGE_DATA / "coffee.png").read_bytes()
    cases = {
        "empty": b"",
        "not_image": b"<html><body>login</body></html>",
        "truncated": photo[: len(photo) // 2],
        "too_large": photo,
        "too_many_pixels": png,
    }
    limits = {"too_large": {"max_bytes": 1000}, "too_many_pixels": {"max_pixels": 64 * 63}}
    for reason, data in cases.items():
        with pytest.raises(ImageError) as err:
            load_image(data, **limits.get(reason, {}))
        assert err.value.reason == reason, (reason, err.value.message)
    with pytest.raises(ImageError) as err:
        load_image(photo_png[: len(photo_png) // 2])
    assert err.value.reason == "truncated"


def test_messages_are_human_readable():
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageError, match=r"too large: 2,000 bytes \(the limit is 1,000 bytes\)"):
        load_image(b"x" * 2000, max_bytes=1000)
    with pytest.raises(ImageError, match=r"too many pixels \(64x64\); the limit is 100 pixels"):
        load_image(encode(Image.new("RGB", (64, 64)), "PNG"), max_pixels=100)


def test_pixel_bomb_is_refused_from_its_header_without_decoding():
    for width, height, limit in [(20_000, 20_000, 40_000_000), (60_000, 60_000, 10**12)]:
        start = time.perf_counter()
        with pytest.raises(ImageError) as err:
            load_image(png_header_only(width, height), max_pixels=limit)
        assert err.value.reason == "too_many_pixels"
        assert time.perf_counter() - start < 1.0


def test_pil_image_input_is_checked_and_converted():
    out = load_image(Image.new("LA", (4, 4), (0, 0)))
    assert out.mode == "RGB" and rgb_at(out, 0, 0) == WHITE
    with pytest.raises(ImageError) as err:
        load_image(Image.new("RGB", (100, 100)), max_pixels=99)
    assert err.value.reason == "too_many_pixels"


def test_formats_outside_the_allowlist_are_refused_unparsed():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"  # PIL would hand this to Ghostscript
    assert Image.open(io.BytesIO(eps)).format == "EPS"
    with pytest.raises(ImageError, match="supported format") as err:
        load_image(eps)
    assert err.value.reason == "not_image"
    webp = encode(Image.new("RGB", (8, 8), RED), "WEBP", lossless=True)
    assert rgb_at(load_image(webp), 4, 4) == RED
