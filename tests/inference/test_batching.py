"""Micro-batching: concurrent callers share engine calls and each still gets exactly its own captions."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import skimage

from inference.batching import BatchingCaptioner
from inference.captioner import LocalCaptioner
from inference.images import ImageError
from inference.types import Captioner, GenerationOptions
from tests.specs import exact_greedy

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
PHOTOS = ["astronaut.png", "rocket.jpg", "chelsea.png", "coffee.png", "camera.png", "horse.png"]
OPTIONS = GenerationOptions(max_new_tokens=6)


class CountingCaptioner(LocalCaptioner):
    """The real captioner, recording the size of each call it receives."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def caption(self, images, options=None):
        self.gate.wait(30)
        self.calls.append(len(images))
        return super().caption(images, options)


@pytest.fixture(scope="module")
def photos():
    return [(SKIMAGE_DATA / name).read_bytes() for name in PHOTOS]


@pytest.fixture
def inner(tiny_model_dir):
    return CountingCaptioner(tiny_model_dir, exact_greedy(batch_size=8, options=OPTIONS))


def call_concurrently(captioner, payloads, options=None):
    results, errors = [None] * len(payloads), [None] * len(payloads)

    def call(i):
        try:
            results[i] = captioner.caption(payloads[i], options)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            errors[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(payloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results, errors


def test_concurrent_calls_share_forward_passes_and_get_their_own_captions(inner, photos):
    expected = [c.text for c in inner.caption(photos)]
    inner.calls.clear()
    batcher = BatchingCaptioner(inner, max_images=8, wait_ms=200)
    assert isinstance(batcher, Captioner) and batcher.model_version == inner.model_version
    results, errors = call_concurrently(batcher, [[p] for p in photos])
    assert errors == [None] * len(photos)
    assert [r[0].text for r in results] == expected
    assert sum(inner.calls) == len(photos) and len(inner.calls) < len(photos)
    assert all({"decode", "queue", "generate", "total"} <= set(r[0].timings_ms) for r in results)
    batcher.close()


def test_batches_stop_at_max_images_and_keep_multi_image_calls_whole(inner, photos):
    inner.gate.clear()  # hold the first batch so the others queue up behind it
    batcher = BatchingCaptioner(inner, max_images=3, wait_ms=50)
    payloads = [photos[:2], photos[2:3], photos[3:5], photos[5:6]]
    done = threading.Thread(target=lambda: call_concurrently(batcher, payloads))
    done.start()
    threading.Timer(0.5, inner.gate.set).start()
    done.join(60)
    assert sum(inner.calls) == 6 and max(inner.calls) <= 3
    batcher.close()


def test_a_bad_image_fails_only_its_own_call(inner, photos):
    batcher = BatchingCaptioner(inner, max_images=8, wait_ms=100)
    results, errors = call_concurrently(batcher, [[photos[0]], [b"not an image"], [photos[1]]])
    assert isinstance(errors[1], ImageError) and errors[1].reason == "not_image"
    assert errors[0] is None and errors[2] is None and results[0][0].text and results[2][0].text
    batcher.close()


def test_different_options_are_never_mixed(inner, photos):
    batcher = BatchingCaptioner(inner, max_images=8, wait_ms=100)
    short, longer = GenerationOptions(max_new_tokens=2), GenerationOptions(max_new_tokens=6)
    results = [None, None]

    def call(i, options):
        results[i] = batcher.caption([photos[0]], options)[0]

    threads = [threading.Thread(target=call, args=(0, short)), threading.Thread(target=call, args=(1, longer))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results[0].text == inner.caption([photos[0]], short)[0].text
    assert results[1].text == inner.caption([photos[0]], longer)[0].text
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.caption([photos[0]])
