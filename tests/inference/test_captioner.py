"""`LocalCaptioner`: the Captioner contract, versions, save/load round trip and model swaps under load."""

from __future__ import annotations

import io
import shutil
import threading
import time
from pathlib import Path

import pytest
import skimage
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

from inference.captioner import LocalCaptioner
from inference.images import ImageError
from inference.model_init import init_model
from inference.modeldir import load_metadata, new_metadata, save_model_dir
from inference.types import Caption, Captioner, GenerationOptions
from tests.specs import EXACT_GREEDY, exact_greedy

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
OPTIONS = GenerationOptions(max_new_tokens=6)


@pytest.fixture(scope="module")
def photo_bytes():
    return [(SKIMAGE_DATA / name).read_bytes() for name in ("chelsea.png", "rocket.jpg", "camera.png")]


@pytest.fixture(scope="module")
def captioner(tiny_model_dir):
    return LocalCaptioner(tiny_model_dir, exact_greedy(batch_size=2, options=OPTIONS))


def test_implements_the_contract_with_capbot_version(captioner, tiny_model_dir, photo_bytes):
    assert isinstance(captioner, Captioner)
    assert captioner.model_version == load_metadata(tiny_model_dir).version
    pil = Image.open(io.BytesIO(photo_bytes[0]))
    captions = captioner.caption([*photo_bytes, pil])
    assert all(isinstance(c, Caption) and c.model_version == captioner.model_version for c in captions)
    assert captions[0].text == captions[3].text  # bytes and PIL input of the same photo agree
    assert {"decode", "preprocess", "generate", "total"} <= set(captions[0].timings_ms)


def test_captions_carry_confidence_and_alternatives(captioner, photo_bytes):
    greedy = captioner.caption(photo_bytes[:1])[0]
    assert 0.0 < greedy.confidence <= 1.0 and greedy.alternatives == ()
    beams = captioner.caption(photo_bytes[:1], GenerationOptions(num_beams=3, max_new_tokens=6, num_alternatives=2))[0]
    assert 0.0 < beams.confidence <= 1.0
    assert len(beams.alternatives) <= 2 and beams.text not in beams.alternatives


def test_bad_image_raises_image_error(captioner, photo_bytes):
    with pytest.raises(ImageError) as err:
        captioner.caption([photo_bytes[0], b"not an image"])
    assert err.value.reason == "not_image"

def test_image_limits_apply(tiny_model_dir, photo_bytes):
    strict = LocalCaptioner(tiny_model_dir, exact_greedy(max_image_bytes=1000, max_image_pixels=10**9))
    with pytest.raises(ImageError, match="too large"):
        strict.caption([photo_bytes[0]])
    strict = LocalCaptioner(tiny_model_dir, exact_greedy(max_image_pixels=100))
    with pytest.raises(ImageError, match="too many pixels"):
        strict.caption([photo_bytes[0]])


def test_save_load_round_trip_gives_identical_captions(captioner, tiny_model_dir, photo_bytes, tmp_path):
    model = VisionEncoderDecoderModel.from_pretrained(tiny_model_dir)
    meta = new_metadata(made_by="train", parent_version=captioner.model_version)
    out = save_model_dir(model, AutoImageProcessor.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir), tmp_path / "copy", meta)
    copy = LocalCaptioner(out, exact_greedy(options=OPTIONS))
    assert copy.model_version == meta.version != captioner.model_version
    beams = GenerationOptions(num_beams=2, max_new_tokens=6)
    for opts in (OPTIONS, beams):
        assert [c.text for c in copy.caption(photo_bytes, opts)] == [c.text for c in captioner.caption(photo_bytes, opts)]


def test_directory_without_metadata_is_versioned_by_its_path(tiny_model_dir, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(tiny_model_dir, bare)
    (bare / "capbot.json").unlink()
    assert LocalCaptioner(bare, EXACT_GREEDY).model_version == str(bare)


def test_reload_swaps_models_without_failing_requests(captioner, tiny_model_dir, photo_bytes, tmp_path):
    other = init_model(tmp_path / "other", seed=1)
    swapper = LocalCaptioner(tiny_model_dir, exact_greedy(options=OPTIONS))
    old_version = swapper.model_version
    results, errors, stop = [], [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                results.append(swapper.caption(photo_bytes[:1])[0].model_version)
            except Exception as exc:  # any failure is a dropped request
                errors.append(exc)

    workers = [threading.Thread(target=serve) for _ in range(2)]
    for w in workers:
        w.start()
    def wait_for(count):
        deadline = time.monotonic() + 30
        while len(results) < count and not errors and time.monotonic() < deadline:
            stop.wait(0.01)

    wait_for(1)
    assert swapper.reload(tmp_path / "other") == other.version
    wait_for(len(results) + 2)
    stop.set()
    for w in workers:
        w.join(timeout=30)
    assert not errors
    assert results[0] == old_version and results[-1] == other.version
    assert swapper.model_version == other.version


def test_failed_reload_keeps_the_old_model(captioner, tmp_path):
    before = captioner.model_version
    with pytest.raises(Exception):
        captioner.reload(tmp_path / "missing")
    assert captioner.model_version == before


def test_close_releases_the_model(tiny_model_dir):
    captioner = LocalCaptioner(tiny_model_dir, EXACT_GREEDY)
    captioner.close()
    with pytest.raises(RuntimeError, match="closed"):
        captioner.caption([Image.new("RGB", (8, 8))])
