"""The resumable downloader against a local HTTP server that misbehaves on purpose."""

from __future__ import annotations

import hashlib
import os
import time

import httpx
import pytest

from tests.fakes.http_files import FileServer, Route
from training.data.download import DownloadError, download_file

BODY = os.urandom(200_000)


@pytest.fixture
def server():
    with FileServer() as srv:
        yield srv


def _get(url, dest, **kw):
    kw.setdefault("show_progress", False)
    kw.setdefault("sleep", lambda s: None)
    kw.setdefault("timeout", 2.0)
    return download_file(url, dest, **kw)


def test_complete_download_verifies_size_and_checksum(server, tmp_path):
    url = server.add("/a.bin", Route(BODY))
    result = _get(url, tmp_path / "a.bin", expected_size=len(BODY), sha256=hashlib.sha256(BODY).hexdigest())
    assert (tmp_path / "a.bin").read_bytes() == BODY
    assert (result.size, result.skipped, result.attempts) == (len(BODY), False, 1)
    assert not (tmp_path / "a.bin.part").exists()


def test_dropped_transfer_resumes_with_range(server, tmp_path):
    url = server.add("/big.bin", Route(BODY, drop_after=70_000, drops=2))
    result = _get(url, tmp_path / "big.bin")
    assert (tmp_path / "big.bin").read_bytes() == BODY
    ranges = [seen.range for seen in server.seen("/big.bin")]
    assert ranges == [None, "bytes=70000-", "bytes=140000-"]
    assert result.resumed_from == 140_000 and result.attempts == 3


def test_partial_file_from_an_earlier_run_is_resumed(server, tmp_path):
    url = server.add("/p.bin", Route(BODY))
    (tmp_path / "p.bin.part").write_bytes(BODY[:12_345])
    result = _get(url, tmp_path / "p.bin", expected_size=len(BODY))
    assert (tmp_path / "p.bin").read_bytes() == BODY
    assert [s.range for s in server.seen("/p.bin")] == ["bytes=12345-"]
    assert result.resumed_from == 12_345


def test_changed_file_is_not_resumed_onto_an_old_prefix(server, tmp_path):
    old, new = BODY, bytes(reversed(BODY))
    route = Route(old, etag='"v1"', drop_after=50_000)
    url = server.add("/v.bin", route)

    def file_changes_during_backoff(seconds):
        route.body, route.etag = new, '"v2"'

    _get(url, tmp_path / "v.bin", sleep=file_changes_during_backoff)  # the drop leaves 50 kB of v1 behind
    assert (tmp_path / "v.bin").read_bytes() == new
    assert [(s.range, s.if_range) for s in server.seen("/v.bin")] == [(None, None), ("bytes=50000-", '"v1"')]
    assert not (tmp_path / "v.bin.part.validator").exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    url = server.add("/norange.bin", Route(BODY, ranges=False))
    (tmp_path / "n.bin.part").write_bytes(b"garbage-prefix")
    _get(url, tmp_path / "n.bin")
    assert (tmp_path / "n.bin").read_bytes() == BODY


def test_part_already_complete_is_finished_with_a_416(server, tmp_path):
    url = server.add("/done.bin", Route(BODY))
    (tmp_path / "d.bin.part").write_bytes(BODY)
    _get(url, tmp_path / "d.bin")
    assert (tmp_path / "d.bin").read_bytes() == BODY


def test_404_is_reported_without_retrying(server, tmp_path):
    with pytest.raises(DownloadError, match="not found") as info:
        _get(server.url("/missing.zip"), tmp_path / "m.zip", retries=5)
    assert info.value.reason == "not_found"
    assert len(server.seen("/missing.zip")) == 1
    assert not (tmp_path / "m.zip").exists()


def test_stall_times_out_after_bounded_retries(server, tmp_path):
    url = server.add("/stall.bin", Route(BODY, stall_s=30))
    started = time.monotonic()
    with pytest.raises(DownloadError, match="timed out") as info:
        _get(url, tmp_path / "s.bin", timeout=0.3, retries=1)
    assert info.value.reason == "timeout"
    assert len(server.seen("/stall.bin")) == 2
    assert time.monotonic() - started < 5


def test_server_errors_back_off_then_give_up(server, tmp_path):
    url = server.add("/flaky", Route(b"busy", status=503))
    delays: list[float] = []
    with pytest.raises(DownloadError, match="HTTP 503"):
        _get(url, tmp_path / "f.bin", retries=3, backoff_s=0.5, sleep=delays.append)
    assert delays == [0.5, 1.0, 2.0]


def test_content_length_differing_from_expected_size_is_refused(server, tmp_path):
    url = server.add("/wrong.bin", Route(BODY))
    with pytest.raises(DownloadError, match="different file") as info:
        _get(url, tmp_path / "w.bin", expected_size=len(BODY) + 1)
    assert info.value.reason == "size_mismatch"
    assert not (tmp_path / "w.bin").exists()


def test_size_mismatch_without_content_length_removes_the_file(server, tmp_path):
    url = server.add("/nolen.bin", Route(BODY, send_length=False))
    with pytest.raises(DownloadError, match="expected") as info:
        _get(url, tmp_path / "x.bin", expected_size=len(BODY) - 10)
    assert info.value.reason == "size_mismatch"
    assert not (tmp_path / "x.bin").exists() and not (tmp_path / "x.bin.part").exists()


def test_checksum_mismatch_removes_the_file(server, tmp_path):
    url = server.add("/c.bin", Route(BODY))
    with pytest.raises(DownloadError, match="checksum") as info:
        _get(url, tmp_path / "c.bin", sha256="0" * 64)
    assert info.value.reason == "checksum"
    assert not list(tmp_path.iterdir())


def test_complete_file_is_skipped_without_a_request(server, tmp_path):
    url = server.add("/a.bin", Route(BODY))
    (tmp_path / "a.bin").write_bytes(BODY)
    result = _get(url, tmp_path / "a.bin", expected_size=len(BODY))
    assert result.skipped and result.attempts == 0
    assert server.requests == []


def test_redirect_is_followed_and_injected_client_is_used(server, tmp_path):
    server.add("/real.bin", Route(BODY))
    url = server.add("/moved.bin", Route(redirect=server.url("/real.bin")))
    with httpx.Client(follow_redirects=True) as client:
        _get(url, tmp_path / "r.bin", client=client)
        assert not client.is_closed
    assert (tmp_path / "r.bin").read_bytes() == BODY
