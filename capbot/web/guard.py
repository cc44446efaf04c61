"""The request guard (ASGI middleware around the whole web app): counts every request by route and status,
bounds how long a request body may take to arrive, and tells a client's hang-up from a server fault.

- A body still arriving `body_timeout_s` after the request started is answered `408 request_timeout` (JSON,
  `Connection: close`): the read raises `RequestTimeout`, which the error handlers answer like any error.
- A client that hangs up before its answer (the server received `http.disconnect`) is a client abort: logged
  at info, counted in `capbot_http_client_aborts_total`, and whatever the app raised because of it
  (Starlette's `ClientDisconnect` mid-upload) is not a 500.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from capbot.metrics import Metrics

log = logging.getLogger(__name__)


class RequestTimeout(HTTPException):
    """The request body did not arrive within the bound; answered 408 and the connection closed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"The request body did not arrive within {seconds:g} s.", headers={"Connection": "close"})


class RequestGuard:
    """Counts, bounds and classifies each HTTP request (see the module docstring)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, body_timeout_s: float | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = _GuardedRequest(receive, send, self.body_timeout_s)
        try:
            await self.app(scope, request.receive, request.send)
        except Exception:
            if not request.aborted:
                raise
        finally:
            self._record(scope, request)

    def _record(self, scope: Scope, request: "_GuardedRequest") -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        if request.aborted:
            log.info("client closed the connection before the answer", extra={"route": route, "method": scope["method"]})
            self.metrics.client_aborted(route, scope["method"])
            return
        if request.timed_out:
            self.metrics.request_timed_out("body")
        self.metrics.request(route, scope["method"], request.status)


class _GuardedRequest:
    """One request's receive and send, watched: body deadline, hang-up, the status answered."""

    def __init__(self, receive: Receive, send: Send, body_timeout_s: float | None) -> None:
        self._receive, self._send = receive, send
        self._timeout_s = body_timeout_s
        loop = asyncio.get_running_loop()
        self._deadline = None if body_timeout_s is None else loop.time() + body_timeout_s
        self._body_done = False
        self.disconnected = False
        self.response_started = False
        self.timed_out = False
        self.status = 500  # if the app fails before starting a response

    @property
    def aborted(self) -> bool:
        """The client hung up before the answer started."""
        return self.disconnected and not self.response_started

    async def receive(self) -> Message:
        if self._body_done or self._deadline is None:
            message = await self._receive()
        else:
            remaining = self._deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(self._receive(), timeout=max(remaining, 0.0))
            except asyncio.TimeoutError:
                self.timed_out = True
                raise RequestTimeout(self._timeout_s or 0.0) from None
        if message["type"] == "http.disconnect":
            self.disconnected = True
        elif not message.get("more_body", False):
            self._body_done = True
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.response_started = not self.disconnected
            self.status = message["status"]
        await self._send(message)
