"""Loading from a hub id: cache first, a quick connection check before the hub, clear errors."""

from __future__ import annotations

import socket

import pytest

from inference.hub import ModelLoadError, hub_reachable, load_pretrained


@pytest.fixture
def listening_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.fixture
def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # free again once closed: nothing listens there


class RecordingLoader:
    """A `from_pretrained` whose cache is empty and whose hub download returns a marker."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, source, **kwargs):
        self.calls.append(kwargs)
        if kwargs.get("local_files_only"):
            raise OSError(f"{source} is not in the cache")
        return "downloaded"


@pytest.fixture
def online(monkeypatch):
    """As on a server with internet access: not offline, no proxy.

    huggingface_hub reads HF_HUB_OFFLINE once, at import (the test session sets it), so its flag is
    switched off directly."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_hub_reachable_opens_a_connection_or_says_no(listening_port, closed_port):
    assert hub_reachable(f"http://127.0.0.1:{listening_port}") is True
    assert hub_reachable(f"http://127.0.0.1:{closed_port}") is False
    assert hub_reachable("https://hub.invalid") is False  # .invalid never resolves
    assert hub_reachable("not a url") is False


def test_an_unreachable_hub_fails_before_the_download_and_its_retries(online, closed_port):
    online.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    loader = RecordingLoader()
    with pytest.raises(ModelLoadError) as err:
        load_pretrained(loader, "owner/model", "model")
    assert err.value.reason == "hub_unreachable" and "local model directory" in err.value.message
    assert loader.calls == [{"local_files_only": True}]  # the cache was tried; the hub never was


def test_a_reachable_hub_or_a_proxy_goes_on_to_the_download(online, listening_port, closed_port):
    online.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listening_port}")
    assert load_pretrained(RecordingLoader(), "owner/model", "model") == "downloaded"
    # Behind a proxy a direct connection proves nothing, so the hub client is left to try.
    online.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    online.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    loader = RecordingLoader()
    assert load_pretrained(loader, "owner/model", "model") == "downloaded"
    assert loader.calls == [{"local_files_only": True}, {}]
