"""A local HTTP server on 127.0.0.1 serving images, redirects, non-images and slow or huge bodies.

Used by the URL fetcher tests and by bot tests that caption an image by URL. Every request is recorded
(path and headers) so tests can check, e.g., that credentials never follow a redirect to another origin.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from PIL import Image


def png_bytes(size: tuple[int, int] = (32, 24), color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A small real PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]


@dataclass
class ImageServerState:
    image: bytes = field(default_factory=png_bytes)
    requests: list[Recorded] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        state = self.server.state
        state.requests.append(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}))
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        route = getattr(self, "_route_" + parts.path.strip("/").split("/")[0].replace("-", "_").replace(".", "_"), None)
        if route is None:
            return self._send(404, b"not found", "text/plain")
        route(parts.path, query)

    # --- routes ---

    def _route_image_png(self, path: str, query: dict) -> None:
        self._send(200, self.server.state.image, "image/png")

    def _route_page_html(self, path: str, query: dict) -> None:
        self._send(200, b"<!doctype html><title>Sign in</title><p>Please sign in", "text/html; charset=utf-8")

    def _route_no_type(self, path: str, query: dict) -> None:
        self._send(200, self.server.state.image, None)

    def _route_redirect(self, path: str, query: dict) -> None:
        """/redirect/N: N more redirects, then /image.png (relative Location headers)."""
        remaining = int(path.strip("/").split("/")[1])
        target = "/image.png" if remaining <= 1 else f"/redirect/{remaining - 1}"
        self._send(302, b"", "text/plain", extra={"Location": target})

    def _route_redirect_to(self, path: str, query: dict) -> None:
        """/redirect-to?url=X: one redirect to an absolute URL."""
        self._send(302, b"", "text/plain", extra={"Location": query["url"][0]})

    def _route_huge_declared(self, path: str, query: dict) -> None:
        """Declares a big Content-Length; a correct client stops before reading it."""
        size = int(query.get("size", ["50000000"])[0])
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self._drip(size, chunk=65536, delay=0.0)

    def _route_huge_chunked(self, path: str, query: dict) -> None:
        """No Content-Length: the cap must be enforced while streaming."""
        size = int(query.get("size", ["50000000"])[0])
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Connection", "close")
        self.end_headers()
        self._drip(size, chunk=65536, delay=0.0)

    def _route_slow(self, path: str, query: dict) -> None:
        """Headers at once, then one byte every `delay` seconds."""
        delay = float(query.get("delay", ["0.2"])[0])
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Connection", "close")
        self.end_headers()
        self._drip(10_000, chunk=1, delay=delay)

    def _route_status(self, path: str, query: dict) -> None:
        self._send(int(path.strip("/").split("/")[1]), b"nope", "text/plain")

    # --- helpers ---

    def _drip(self, size: int, chunk: int, delay: float) -> None:
        sent = 0
        try:
            while sent < size:
                n = min(chunk, size - sent)
                self.wfile.write(b"\0" * n)
                self.wfile.flush()
                sent += n
                if delay:
                    time.sleep(delay)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should
        self.close_connection = True

    def _send(self, status: int, body: bytes, content_type: str | None, extra: dict | None = None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ImageServerState


class ImageServer:
    """Context manager: `with ImageServer() as srv: srv.url("/image.png")`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._server = _Server((host, 0), _Handler)
        self._server.state = ImageServerState()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def state(self) -> ImageServerState:
        return self._server.state

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str) -> str:
        """Absolute URL of `path` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> "ImageServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
