"""A local stand-in for Slack's Socket Mode websocket on 127.0.0.1.

Like Slack it greets each connection with `hello`, pushes event envelopes, and expects every envelope
to be acknowledged with its `envelope_id`; acknowledgements are recorded so tests can wait for them.
Point `FakeSlackState.socket_url` at `url` so apps.connections.open hands it out.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, Callable

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve


class FakeSocketMode:
    """Context manager: `with FakeSocketMode() as socket: ... socket.send_event(body) ... socket.wait_for_ack(id)`."""

    def __init__(self, app_id: str = "A1") -> None:
        self.app_id = app_id
        self.acks: list[dict[str, Any]] = []
        self.connections = 0
        self._connection: ServerConnection | None = None
        self._changed = threading.Condition()
        self._server = serve(self._serve, "127.0.0.1", 0)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/link/?ticket=fake"

    def send_event(self, body: dict[str, Any]) -> str:
        """Push an Events API envelope around `body` (an event_callback); returns its envelope id."""
        envelope_id = str(uuid.uuid4())
        envelope = {"envelope_id": envelope_id, "type": "events_api", "payload": body,
                    "accepts_response_payload": False, "retry_attempt": 0, "retry_reason": ""}
        self._wait(lambda: self._connection is not None, "a Socket Mode connection")
        assert self._connection is not None
        self._connection.send(json.dumps(envelope))
        return envelope_id

    def wait_for_ack(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The client's acknowledgement of `envelope_id` (raises on timeout)."""
        self._wait(lambda: any(a.get("envelope_id") == envelope_id for a in self.acks), f"ack of {envelope_id}", timeout)
        return next(a for a in self.acks if a.get("envelope_id") == envelope_id)

    def wait_connected(self, timeout: float = 10.0) -> None:
        """Block until a client has connected."""
        self._wait(lambda: self.connections > 0, "a Socket Mode connection", timeout)

    def _serve(self, connection: ServerConnection) -> None:
        with self._changed:
            self._connection = connection
            self.connections += 1
            self._changed.notify_all()
        connection.send(json.dumps({"type": "hello", "num_connections": 1,
                                    "connection_info": {"app_id": self.app_id},
                                    "debug_info": {"host": "fake", "approximate_connection_time": 3600}}))
        try:
            for raw in connection:
                with self._changed:
                    self.acks.append(json.loads(raw))
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self._changed:
                if self._connection is connection:
                    self._connection = None
                self._changed.notify_all()

    def _wait(self, condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}")
                self._changed.wait(left)

    def __enter__(self) -> "FakeSocketMode":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
