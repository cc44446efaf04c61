"""Parallel image fetching: verified images saved, every failure classified, nothing retried forever."""

from __future__ import annotations

import io
import os
import time

import httpx
import pytest
from PIL import Image

from tests.fakes.http_files import FileServer, LocalTransport, Route
from training.data.image_fetch import FetchOptions, ImageJob, fetch_images

OPTIONS = FetchOptions(timeout=0.3, retries=1, max_bytes=6_000, backoff_s=0)


def image_bytes(colour=(200, 30, 30), size=(12, 10), fmt="JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, fmt)
    return buffer.getvalue()


def noisy_png(side=64) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG")
    return buffer.getvalue()  # incompressible: ~12 kB, over OPTIONS.max_bytes


@pytest.fixture
def server():
    with FileServer() as srv:
        yield srv


def _jobs(server, tmp_path, names):
    return [ImageJob(name, server.url(f"/img/{name}"), tmp_path / "out" / name) for name in names]


def test_mixed_batch_counts_each_failure_kind(server, tmp_path):
    server.add("/img/red", Route(image_bytes(), content_type="image/jpeg"))
    server.add("/img/png", Route(image_bytes((0, 0, 255), fmt="PNG"), content_type="image/jpeg"))
    server.add("/img/html", Route(b"<html>not a picture</html>", content_type="image/jpeg"))
    server.add("/img/stall", Route(image_bytes(), content_type="image/jpeg", stall_s=30))
    server.add("/img/huge", Route(noisy_png(), content_type="image/png"))
    server.add("/img/huge-nolength", Route(noisy_png(), content_type="image/png", send_length=False))
    server.add("/img/teapot", Route(b"no", status=418))
    names = ["red", "missing", "png", "html", "stall", "huge", "huge-nolength", "teapot"]
    started = time.monotonic()
    report = fetch_images(_jobs(server, tmp_path, names), workers=4, options=OPTIONS, show_progress=False,
                          sleep=lambda s: None)
    assert time.monotonic() - started < 5
    assert [i.key for i in report.images] == ["red", "png"]
    assert report.counts() == {"not_found": 1, "not_image": 1, "timeout": 1, "too_large": 2, "http_error": 1}
    assert [f.key for f in report.failures] == ["missing", "html", "stall", "huge", "huge-nolength", "teapot"]
    assert len(server.seen("/img/stall")) == 2  # one retry, then given up
    assert len(server.seen("/img/missing")) == 1  # a 404 is not retried
    red, png = report.images
    assert red.path.name == "red.jpg" and png.path.name == "png.png"  # extension from the real format
    assert (red.width, red.height) == (12, 10)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["png.png", "red.jpg"]


def test_dropped_connection_is_retried(server, tmp_path):
    body = image_bytes()
    server.add("/img/flaky", Route(body, content_type="image/jpeg", drop_after=100))
    report = fetch_images(_jobs(server, tmp_path, ["flaky"]), options=OPTIONS, show_progress=False,
                          sleep=lambda s: None)
    assert report.failures == [] and report.images[0].path.read_bytes() == body
    assert len(server.seen("/img/flaky")) == 2


def test_rerun_uses_images_already_on_disk(server, tmp_path):
    server.add("/img/red", Route(image_bytes(), content_type="image/jpeg"))
    jobs = _jobs(server, tmp_path, ["red"])
    fetch_images(jobs, options=OPTIONS, show_progress=False)
    server.requests.clear()
    report = fetch_images(jobs, options=OPTIONS, show_progress=False)
    assert report.images[0].cached and server.requests == []


def test_imgur_placeholder_for_deleted_images_is_rejected(server, tmp_path):
    server.add("/gone.jpg", Route(redirect="https://i.imgur.com/removed.png"))
    server.add("/removed.png", Route(image_bytes(fmt="PNG"), content_type="image/png"))
    job = ImageJob("gone", "https://i.imgur.com/gone.jpg", tmp_path / "gone")
    with httpx.Client(transport=LocalTransport(server), follow_redirects=True) as client:
        report = fetch_images([job], client=client, options=OPTIONS, show_progress=False)
    assert report.counts() == {"removed": 1}
    assert not list(tmp_path.iterdir())
