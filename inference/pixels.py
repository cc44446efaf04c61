"""Image sources to the model's pixel tensor: the one image path of serving, evaluation and training.

Every image a model sees, a chat upload, an evaluation file or a training example (user feedback blobs are
raw uploads), goes through `decode_image` (the intake: limits, EXIF orientation, transparency on white,
CMYK/16-bit/palette to RGB) and then `pixel_values` (the model's own resize and normalisation). Decoding
training images any other way would teach the model pictures that differ from the ones it captions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, Union

import torch
from PIL import Image

from inference.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ImageError, load_image

ImageSource = Union[bytes, str, Path, Image.Image]  # bytes, an image file, or a PIL image


def decode_image(source: ImageSource, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An upright RGB image from bytes, a file or a PIL image, or `ImageError` (naming the file, if any)."""
    if not isinstance(source, (str, Path)):
        return load_image(source, max_bytes=max_bytes, max_pixels=max_pixels)
    path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror or exc}", reason="unreadable") from exc
    try:
        return load_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc.message}", reason=exc.reason) from exc


def pixel_values(image_processor: Any, images: Sequence[Image.Image]) -> torch.Tensor:
    """The model's input tensor (N, C, H, W) for decoded RGB images, on the CPU in float32."""
    return image_processor(images=list(images), return_tensors="pt")["pixel_values"]


def prepare_pixels(image_processor: Any, sources: Sequence[ImageSource], *, max_bytes: int = DEFAULT_MAX_BYTES,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """`decode_image` each source, then `pixel_values`."""
    images = [decode_image(s, max_bytes=max_bytes, max_pixels=max_pixels) for s in sources]
    return pixel_values(image_processor, images)
