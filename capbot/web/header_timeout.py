"""uvicorn's HTTP/1.1 protocol (h11) with a bound on how long a request's headers may take to arrive.

uvicorn times out idle keep-alive connections only: a client that opens a connection and sends its headers
a byte at a time (or never finishes them) holds a connection and its buffers for as long as it likes. Here
a timer runs from the connection's opening, and again from the first byte of each later request, until the
request's headers are complete; when it fires the client gets a 408 in the API's JSON error shape (the app
cannot answer a request it never received, so the protocol writes it) and the connection is closed. The
body's own bound is the web app's (`capbot.web.guard`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Callable

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


def header_timeout_protocol(seconds: float, on_timeout: Callable[[], None] = lambda: None) -> type[H11Protocol]:
    """The protocol class to give `uvicorn.Config(http=...)`: headers must arrive within `seconds`;
    `on_timeout()` is called for each connection let go (e.g. to count it)."""
    body = json.dumps({"error": {"code": "request_timeout",
                                 "message": f"The request headers did not arrive within {seconds:g} s."}}).encode()
    answer = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
              b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
    return type("HeaderTimeoutH11Protocol", (_HeaderTimeoutProtocol,),
                {"header_timeout_s": seconds, "timeout_answer": answer, "on_header_timeout": staticmethod(on_timeout)})


class _HeaderTimeoutProtocol(H11Protocol):
    header_timeout_s: float = 20.0
    timeout_answer: bytes = b""
    on_header_timeout: Callable[[], None] = staticmethod(lambda: None)
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self._waiting_for_headers():
            self._arm_header_timer()  # the first byte of another request on a kept-alive connection
        super().data_received(data)
        if not self._waiting_for_headers():
            self._disarm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _waiting_for_headers(self) -> bool:
        # h11 leaves the client IDLE until a request's headers are complete.
        return self.conn.their_state is h11.IDLE

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._waiting_for_headers():
            return
        log.info("request headers too slow, closing the connection", extra={"seconds": self.header_timeout_s})
        self.on_header_timeout()
        self.transport.write(self.timeout_answer)
        self.transport.close()
