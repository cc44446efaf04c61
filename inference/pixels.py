"""Image sources to the model's pixel tensor: the one image path of serving, evaluation and training.

Every image a model sees, a chat upload, an evaluation file or a training example (user feedback blobs are
raw uploads), goes through `decode_image` (the intake: limits, EXIF orientation, transparency on white,
CMYK/16-bit/palette to RGB) and then `pixel_values` (the model's own resize and normalisation). Decoding
training images any other way would teach the model pictures that differ from the ones it captions.

`pixel_values` computes what the model's image processor computes (`PixelSpec`, from its
preprocessor_config.json) in NumPy: the same PIL resize, the same float64 rescale and float32
normalisation, so the same bits (tests/inference/test_pixels.py), without importing torch (the fast path
serves without it). A processor configured beyond resize/rescale/normalise runs itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np
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


_PROCESSOR_FILE = "preprocessor_config.json"
_PLAIN_TYPES = {"ViTImageProcessor", "ViTImageProcessorPil", "ViTImageProcessorFast", "ViTFeatureExtractor"}


@dataclass(frozen=True)
class PixelSpec:
    """A ViT image processor's arithmetic: resize to height x width, then x * rescale, then (x - mean) / std."""

    height: int
    width: int
    resample: int  # PIL's resampling filter number (2 = bilinear)
    rescale: float | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "PixelSpec | None":
        """The spec of a processor config, or None when it asks for more (crops, padding, shortest edge)."""
        if config.get("image_processor_type", config.get("feature_extractor_type")) not in _PLAIN_TYPES:
            return None
        if config.get("do_center_crop") or config.get("do_pad") or not config.get("do_resize", True):
            return None
        size = config.get("size", 224)
        if isinstance(size, int):
            size = {"height": size, "width": size}
        if not isinstance(size, Mapping) or set(size) - {"height", "width"} or len(size) != 2:
            return None
        normalize = config.get("do_normalize", True)
        return cls(int(size["height"]), int(size["width"]), int(config.get("resample", 2)),
                   float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else None,
                   tuple(config["image_mean"]) if normalize else None, tuple(config["image_std"]) if normalize else None)

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> "PixelSpec | None":
        """The spec of a model directory's preprocessor_config.json (None: missing or not plain)."""
        path = Path(model_dir) / _PROCESSOR_FILE
        if not path.is_file():
            return None
        return cls.from_config(json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def from_processor(cls, processor: Any) -> "PixelSpec | None":
        """The spec of a loaded transformers image processor (None: not plain)."""
        config = processor.to_dict()
        config.setdefault("image_processor_type", type(processor).__name__)
        return cls.from_config(config)

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, 3, height, width) float32, as transformers' PIL backend computes it."""
        out = np.empty((len(images), 3, self.height, self.width), dtype=np.float32)
        for i, image in enumerate(images):
            resized = image.convert("RGB").resize((self.width, self.height), resample=self.resample)
            pixels = np.asarray(resized)
            if self.rescale is not None:
                pixels = (pixels.astype(np.float64) * self.rescale).astype(np.float32)
            pixels = pixels.astype(np.float32, copy=False)
            if self.mean is not None:
                pixels = (pixels - np.array(self.mean, dtype=np.float32)) / np.array(self.std, dtype=np.float32)
            out[i] = pixels.transpose(2, 0, 1)
        return out


def pixel_values(image_processor: Any, images: Sequence[Image.Image], *, as_numpy: bool = False) -> Any:
    """The model's input (N, C, H, W) for decoded RGB images, on the CPU in float32: a torch tensor, or a
    NumPy array with `as_numpy`. `image_processor` is a transformers image processor or a `PixelSpec`."""
    spec = image_processor if isinstance(image_processor, PixelSpec) else PixelSpec.from_processor(image_processor)
    if spec is None:
        values = image_processor(images=list(images), return_tensors="np" if as_numpy else "pt")["pixel_values"]
        return values
    array = spec(images)
    if as_numpy:
        return array
    import torch

    return torch.from_numpy(array)


def prepare_pixels(image_processor: Any, sources: Sequence[ImageSource], *, max_bytes: int = DEFAULT_MAX_BYTES,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
    """`decode_image` each source, then `pixel_values`."""
    images = [decode_image(s, max_bytes=max_bytes, max_pixels=max_pixels) for s in sources]
    return pixel_values(image_processor, images)
