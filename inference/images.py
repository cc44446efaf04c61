"""Image intake: turn untrusted bytes (or a PIL image) into an upright RGB image, or one clear `ImageError`.

Order matters for safety: the byte limit is checked before parsing, the pixel limit after reading only the
header and before decoding any pixels (a small file can declare billions of pixels), and decoding errors
of every kind become `ImageError`s instead of crashes.

Memory: a decode holds its pixel count of the process's decode budget (`inference.decode_budget`) from before
its pixels are read until they are shrunk to at most WORKING_PIXELS, so concurrent large images wait for each
other instead of exhausting memory. JPEGs past that size decode at a reduced scale (the DCT's 1/2, 1/4, 1/8);
other formats decode in full and are then reduced by an integer box filter (alpha premultiplied). A caption
model sees 224-768 pixels a side, so nothing it could use is lost, and training decodes the same way.
"""

from __future__ import annotations

import io
import logging
import math
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from inference.decode_budget import DecodeBudget, shared_budget
from storage.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000

# Formats a chat user may send. Others (EPS runs Ghostscript, PSD, ...) are refused before PIL parses them.
# JPEG includes phones' multi-picture (MPO) files, which PIL's JPEG opener returns itself.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "ICO", "PPM")

WORKING_PIXELS = 2_000_000  # decoded images larger than this are shrunk to it (about 1400x1400)

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_REDUCIBLE_MODES = {"L", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "I", "F"}  # Image.reduce's
_HIGH_BIT_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


class ImageError(UserError):
    """An image that cannot be captioned. `reason` is one of:

    empty, not_image, truncated, too_large (bytes), too_many_pixels, unreadable (a file that cannot be read).
    """


def load_image(
    data: bytes | Image.Image,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    budget: DecodeBudget | None = None,
) -> Image.Image:
    """Decode `data` into an RGB image, upright per its EXIF orientation; raise `ImageError` otherwise.

    Transparent images are composited on white, CMYK/16-bit/grayscale/palette become RGB, and animated
    images give their first frame. Images over WORKING_PIXELS come back shrunk to it. `budget`: the decode
    budget to hold while decoding (default: the process's, `inference.decode_budget.shared_budget()`).
    """
    budget = budget or shared_budget()
    if isinstance(data, Image.Image):
        _check_pixels(data.size, max_pixels)
        with budget.hold(data.width * data.height):
            try:
                data.load()  # a lazily opened image may still fail to decode
            except Exception as exc:
                raise ImageError(f"the image file is truncated or corrupt ({_brief(exc)})", reason="truncated") from exc
            return _to_rgb(_upright(_shrink(data)))
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"load_image takes bytes or a PIL image, not {type(data).__name__}")
    if len(data) == 0:
        raise ImageError("the file is empty", reason="empty")
    if len(data) > max_bytes:
        raise ImageError(
            f"the image is too large: {_mb(len(data))} (the limit is {_mb(max_bytes)})", reason="too_large"
        )
    return _decode(bytes(data), max_pixels, budget)


def _decode(data: bytes, max_pixels: int, budget: DecodeBudget) -> Image.Image:
    with warnings.catch_warnings():
        # PIL only warns about a decompression bomb below twice its own limit; never decode one.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)  # reads the header only
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _too_many_pixels(None, max_pixels) from None
        except UnidentifiedImageError:
            raise ImageError(
                "the file is not an image in a supported format (JPEG, PNG, GIF, WebP, BMP, TIFF)", reason="not_image"
            ) from None
        except Exception as exc:  # broken headers raise assorted errors (SyntaxError, struct.error, ...)
            raise ImageError(f"the file is not a readable image ({_brief(exc)})", reason="not_image") from exc
        _check_pixels(image.size, max_pixels)
        size = image.size
        try:
            image.seek(0)  # animated: the first frame
            _draft(image)
            with budget.hold(image.width * image.height):
                image.load()  # decodes pixels; truncated data raises here
                shrunk = _shrink(image)
                if shrunk is not image:
                    image.close()  # the full-size pixels go now, before the budget admits the next decode
                return _to_rgb(_upright(shrunk))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _too_many_pixels(size, max_pixels) from None
        except ImageError:
            raise
        except Exception as exc:
            raise ImageError(f"the image file is truncated or corrupt ({_brief(exc)})", reason="truncated") from exc


def _reduction(size: tuple[int, int]) -> int:
    """The smallest whole factor that brings `size` within WORKING_PIXELS (1: small enough already)."""
    return max(1, math.ceil(math.sqrt(size[0] * size[1] / WORKING_PIXELS)))


def _draft(image: Image.Image) -> None:
    """Let a JPEG decode at the largest DCT scale (1/2, 1/4, 1/8) that still covers the working size."""
    factor = _reduction(image.size)
    if factor > 1 and image.format in ("JPEG", "MPO"):
        image.draft(None, (math.ceil(image.width / factor), math.ceil(image.height / factor)))


def _shrink(image: Image.Image) -> Image.Image:
    """`image` within WORKING_PIXELS, box-reduced by a whole factor (alpha premultiplied, as PIL's reduce does)."""
    factor = _reduction(image.size)
    if factor == 1:
        return image
    if image.mode in ("P", "PA") or ("transparency" in image.info and image.mode not in _HIGH_BIT_MODES):
        image = _convert_quietly(image, "RGBA")  # palette indices cannot be averaged; a colour key becomes alpha
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode in _HIGH_BIT_MODES and image.mode not in ("I", "F"):
        image = image.convert("I")
    if image.mode not in _REDUCIBLE_MODES:
        return image  # exotic modes are converted at full size, as before
    return image.reduce(factor)


def _convert_quietly(image: Image.Image, mode: str) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's "convert palette transparency to RGBA" advice is what we do
        return image.convert(mode)


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"the image has no pixels ({width}x{height})", reason="not_image")
    if width * height > max_pixels:
        raise _too_many_pixels(size, max_pixels)


def _too_many_pixels(size: tuple[int, int] | None, max_pixels: int) -> ImageError:
    dims = f" ({size[0]}x{size[1]})" if size else ""
    return ImageError(
        f"the image has too many pixels{dims}; the limit is {max_pixels:,} pixels", reason="too_many_pixels"
    )


def _upright(image: Image.Image) -> Image.Image:
    # A broken EXIF block should not lose the image: caption it as stored.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ImageOps.exif_transpose(image)
    except Exception as exc:
        log.debug("ignoring unreadable EXIF orientation", extra={"error": _brief(exc)})
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's "convert palette transparency to RGBA" advice is what we do
        return _convert(image)


def _convert(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    try:
        if mode in _HIGH_BIT_MODES:
            return _high_bit_to_rgb(image)
        if mode in _ALPHA_MODES or "transparency" in image.info:
            return _on_white(image.convert("RGBA"))
        return image.convert("RGB")
    except ImageError:
        raise
    except Exception as exc:  # exotic modes PIL cannot convert (e.g. LAB without a profile)
        raise ImageError(f"the image's colour mode {mode} is not supported", reason="not_image") from exc


def _on_white(rgba: Image.Image) -> Image.Image:
    # Transparent pixels often hold black; on white they look as the sender saw them in a chat client.
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _high_bit_to_rgb(image: Image.Image) -> Image.Image:
    # PIL's convert("L") clips 16-bit values at 255, turning most pictures white; scale instead.
    values = np.asarray(image, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ImageError("the image holds no valid pixel values", reason="not_image")
    low, high = float(finite.min()), float(finite.max())
    if image.mode == "F" or high > 65535 or low < 0:
        scaled = (values - low) / ((high - low) or 1.0) * 255.0
    elif high > 255:
        scaled = values / 257.0  # the 16-bit range onto 8 bits
    else:
        scaled = values
    grey = np.nan_to_num(scaled, nan=0.0).clip(0, 255).round().astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")  # a 2-D uint8 array is mode L


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB" if n >= 1024 * 1024 else f"{n:,} bytes"


def _brief(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:120]
