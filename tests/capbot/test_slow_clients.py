"""Clients that hang up or dawdle, over real sockets against `capbot run` (issue 22, items 3 and 4).

A client that hangs up mid-upload is the client's doing: logged below error level and counted as a client
abort, never as a 5xx. A client that sends its headers or its body too slowly gets a 408 in JSON, and its
connection is closed, within CAPBOT_REQUEST_HEADER_TIMEOUT_S / CAPBOT_REQUEST_BODY_TIMEOUT_S."""

from __future__ import annotations

import json
import re
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.capbot.capbot_server import running_capbot

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 2.0
WAIT_S = 10.0  # far past either bound: a server that never times out fails here, it does not hang the test


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    with running_capbot(tmp_path_factory.mktemp("slow"), tiny_model_dir,
                        CAPBOT_REQUEST_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
                        CAPBOT_REQUEST_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S)) as running:
        yield running


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=WAIT_S)
    return sock


def _read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started, data = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        raise AssertionError(f"the server held the connection for {WAIT_S} s; it sent {data!r}") from None
    except ConnectionResetError:
        pass
    return data, time.monotonic() - started


def _json_408(answer: bytes) -> dict:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert b"content-type: application/json" in head.lower(), answer
    return json.loads(body)


def _upload_head(length: int, content_type: str = "image/png") -> bytes:
    return (f"POST /v1/captions HTTP/1.1\r\nHost: capbot\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def _metrics(server) -> str:
    return httpx.get(server.url + "metrics", timeout=30).text


def test_clients_hanging_up_mid_upload_are_client_aborts_not_server_errors(server, photo_bytes):
    boundary = "capbotboundary"
    multipart_head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
                      "Content-Type: image/png\r\n\r\n").encode()
    uploads = [
        (_upload_head(len(photo_bytes)), photo_bytes[: len(photo_bytes) // 3]),
        (_upload_head(len(photo_bytes) + 500, f"multipart/form-data; boundary={boundary}"),
         multipart_head + photo_bytes[:4000]),
    ]
    for n in range(6):
        head, part = uploads[n % 2]
        with _connect(server.url) as sock:
            sock.sendall(head + part)
            time.sleep(0.2)  # the server is reading the body now
    ok = httpx.get(server.url + "healthz", timeout=30)  # and it still serves
    assert ok.status_code == 200
    deadline = time.monotonic() + 10
    while not re.search(r'capbot_http_client_aborts_total\{method="POST",route="/v1/captions"\} 6\.0', metrics := _metrics(server)):
        assert time.monotonic() < deadline, metrics
        time.sleep(0.2)
    assert not re.search(r'capbot_http_requests_total\{[^}]*status="5\d\d"', metrics), metrics
    log = "".join(server.log)
    assert "ClientDisconnect" not in log and "Traceback" not in log, log
    assert not re.search(r"^\S+ (error|critical) ", log, re.MULTILINE), log
    assert log.count("client closed the connection before the answer") == 6, log


def test_headers_sent_too_slowly_get_408_json_and_the_connection_closes(server):
    with _connect(server.url) as sock:
        sock.sendall(b"POST /v1/captions HTTP/1.1\r\nHost: capbot\r\n")  # and never the blank line
        answer, waited = _read_until_closed(sock)
    assert _json_408(answer)["error"]["code"] == "request_timeout"
    assert HEADER_TIMEOUT_S * 0.8 < waited < HEADER_TIMEOUT_S + 3
    with _connect(server.url) as silent:  # a connection that never says anything is closed as well
        _, waited = _read_until_closed(silent)
    assert waited < HEADER_TIMEOUT_S + 3


@pytest.mark.parametrize("sent", [0, 1000], ids=["headers-only", "half-a-body"])
def test_bodies_sent_too_slowly_get_408_json_and_the_connection_closes(server, photo_bytes, sent):
    with _connect(server.url) as sock:
        sock.sendall(_upload_head(len(photo_bytes)) + photo_bytes[:sent])
        answer, waited = _read_until_closed(sock)
    error = _json_408(answer)["error"]
    assert error["code"] == "request_timeout" and "body" in error["message"]
    assert waited < BODY_TIMEOUT_S + 3


def test_many_slow_clients_are_all_let_go_and_others_are_served(server, photo_bytes):
    socks = [_connect(server.url) for _ in range(20)]
    try:
        for n, sock in enumerate(socks):
            sock.sendall(_upload_head(len(photo_bytes)) + photo_bytes[:n * 100] if n % 2 else b"GET /v1/mo")
        served = httpx.post(server.url + "v1/captions", content=photo_bytes, headers={"Content-Type": "image/png"},
                            timeout=60)
        assert served.status_code == 201, served.text
        started = time.monotonic()
        for sock in socks:
            _read_until_closed(sock)
        assert time.monotonic() - started < BODY_TIMEOUT_S + 3
    finally:
        for sock in socks:
            sock.close()
    metrics = _metrics(server)
    assert re.search(r'capbot_http_request_timeouts_total\{phase="headers"\} \d', metrics), metrics
    assert re.search(r'capbot_http_request_timeouts_total\{phase="body"\} \d', metrics), metrics
