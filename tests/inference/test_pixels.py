"""The image path's NumPy preprocessing computes the model's own image processor's bits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage
from PIL import Image
from transformers import AutoImageProcessor

from inference.images import load_image
from inference.modeldir import make_image_processor
from inference.pixels import PixelSpec, pixel_values

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"


@pytest.fixture(scope="module")
def images():
    photos = [load_image((SKIMAGE_DATA / n).read_bytes()) for n in ("astronaut.png", "rocket.jpg", "camera.png")]
    return photos + [Image.new("RGB", (7, 300), (250, 3, 9)), Image.new("RGB", (224, 224), (1, 2, 3))]


@pytest.mark.parametrize("size", [64, 224])
def test_numpy_preprocessing_equals_the_image_processor_bit_for_bit(images, tmp_path, size):
    processor = make_image_processor(size)
    processor.save_pretrained(tmp_path)
    expected = AutoImageProcessor.from_pretrained(tmp_path)(images=images, return_tensors="np")["pixel_values"]
    for spec in (PixelSpec.from_dir(tmp_path), PixelSpec.from_processor(processor)):
        assert spec is not None
        assert np.array_equal(spec(images), expected)
    assert np.array_equal(pixel_values(processor, images).numpy(), expected)


def test_a_processor_that_crops_runs_itself(images, tmp_path):
    cropping = {"image_processor_type": "ViTImageProcessor", "do_center_crop": True, "size": 224}
    assert PixelSpec.from_config(cropping) is None
    assert PixelSpec.from_config({"image_processor_type": "CLIPImageProcessor"}) is None
    assert PixelSpec.from_config({"image_processor_type": "ViTFeatureExtractor", "size": 32, "do_normalize": True,
                                  "image_mean": [0.5] * 3, "image_std": [0.5] * 3}).height == 32
