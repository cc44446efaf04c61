"""A threaded HTTP file server on 127.0.0.1 for download tests.

It serves byte bodies from a route table and can misbehave on purpose: honour or ignore `Range`, answer 404
for unknown paths, stall mid-transfer (so clients must time out), drop the connection part-way through a
body a set number of times (so clients must resume), lie about the content type, or redirect. Every request
is recorded so tests can assert what the client asked for (e.g. that it sent a `Range` header, or that it
sent nothing at all).
"""

from __future__ import annotations

import re
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class Route:
    """How one path answers."""

    body: bytes = b""
    content_type: str = "application/octet-stream"
    status: int = 200
    ranges: bool = True  # honour Range requests with 206; False = always send the whole body with 200
    stall_s: float = 0.0  # after headers and `stall_after` bytes, go silent this long, then hang up
    stall_after: int = 0
    drop_after: int | None = None  # send this many body bytes, then close the connection ...
    drops: int = 1  # ... this many times; later requests are served in full
    redirect: str | None = None  # answer 302 to this location
    send_length: bool = True  # False = no Content-Length (the client cannot know the size up front)
    etag: str | None = None  # sent as ETag; a Range request whose If-Range differs gets the whole body


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    method: str
    path: str
    range: str | None
    if_range: str | None = None


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up (the stall and dropped-transfer tests make them) are not errors worth a traceback."""

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@dataclass
class FileServer:
    """Serves `routes` on 127.0.0.1 from a background thread; use as a context manager."""

    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-http-files", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def add(self, path: str, route: Route) -> str:
        """Serve `route` at `path`; returns its absolute URL."""
        self.routes[path] = route
        return self.url(path)

    def seen(self, path: str) -> list[Seen]:
        """The requests made for one path, in order."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)

    def _take_drop(self, route: Route) -> bool:
        with self._lock:
            if route.drop_after is None or route.drops <= 0:
                return False
            route.drops -= 1
            return True

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # wakes stalled handlers so shutdown does not wait for them
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _handler_for(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def do_GET(self) -> None:
            self._serve(head=False)

        def _serve(self, head: bool) -> None:
            path = self.path.split("?", 1)[0]
            server._record(Seen(self.command, path, self.headers.get("Range"), self.headers.get("If-Range")))
            route = server.routes.get(path)
            if route is None:
                return self._plain(404, b"not found")
            if route.redirect:
                self.send_response(302)
                self.send_header("Location", route.redirect)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if route.status != 200:
                return self._plain(route.status, route.body or b"error")
            start, end = 0, len(route.body)
            if_range = self.headers.get("If-Range")
            honour = route.ranges and (if_range is None or if_range == route.etag)
            requested = _RANGE.match(self.headers.get("Range", "")) if honour else None
            if requested:
                start = int(requested.group(1))
                end = min(int(requested.group(2)) + 1, end) if requested.group(2) else end
                if start >= len(route.body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(route.body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            self._body(route, start, end, partial=bool(requested), head=head)

        def _body(self, route: Route, start: int, end: int, partial: bool, head: bool) -> None:
            chunk = route.body[start:end]
            self.send_response(206 if partial else 200)
            self.send_header("Content-Type", route.content_type)
            if route.ranges:
                self.send_header("Accept-Ranges", "bytes")
            if route.etag:
                self.send_header("ETag", route.etag)
            if partial:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(route.body)}")
            if route.send_length:
                self.send_header("Content-Length", str(len(chunk)))
            else:
                self.close_connection = True  # the body ends when the connection does
            self.end_headers()
            if head:
                return
            if route.stall_s:
                self.wfile.write(chunk[: route.stall_after])
                self.wfile.flush()
                server._stop.wait(route.stall_s)
                self.close_connection = True
                return
            if server._take_drop(route):
                self.wfile.write(chunk[: route.drop_after])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(chunk)

        def _plain(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler


class LocalTransport(httpx.BaseTransport):
    """An httpx transport that sends every request, whatever its host, to a local `FileServer`.

    Lets code that builds real public URLs (e.g. the official COCO host) run unchanged against 127.0.0.1.
    """

    def __init__(self, server: FileServer) -> None:
        self._inner = httpx.HTTPTransport()
        self._server = server

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host, port = self._server._httpd.server_address[:2]
        # A copy goes to the server; the original keeps its public URL, so response.url stays public too.
        local = httpx.Request(
            request.method, request.url.copy_with(scheme="http", host=host, port=port),
            headers=request.headers, stream=request.stream, extensions=request.extensions,
        )
        return self._inner.handle_request(local)

    def close(self) -> None:
        self._inner.close()
