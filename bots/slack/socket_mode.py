"""Socket Mode: the same bolt app over a websocket opened by capbot (no public URL needed).

Used when an app-level token (xapp-...) is configured. A Slack that refuses the token is a `UserError` at
start-up. A Slack that cannot be reached is not: the runner keeps trying in the background with backoff, and
watches the connection afterwards (slack_sdk's client reconnects by itself, but its monitor thread dies on
the first failed reconnect), reporting where it stands to a `ConnectionTracker`. Tested against local
stand-ins of the Web API and the websocket (tests/fakes/slack_socket.py).
"""

from __future__ import annotations

import logging
import threading

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk.errors import SlackApiError

from bots.connection import CONNECTED, Backoff, ConnectionTracker
from storage.errors import UserError

log = logging.getLogger(__name__)

# apps.connections.open errors that a person must fix; anything else (unreachable, 5xx, ratelimited) passes.
REFUSALS = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
                      "not_allowed_token_type", "missing_scope", "no_permission", "invalid_token"})
CHECK_INTERVAL_S = 2.0  # how often an established connection is looked at


class _Refused(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class SocketModeRunner:
    """Starts and stops a Socket Mode connection for `app` without blocking the caller."""

    def __init__(self, app: App, app_token: str, *, tracker: ConnectionTracker | None = None,
                 backoff: Backoff | None = None) -> None:
        if not app_token.startswith("xapp-"):
            raise UserError("The Slack app-level token must start with xapp- (Basic Information > App-Level Tokens).",
                            reason="bad_app_token")
        self.handler = SocketModeHandler(app, app_token)
        self._socket = self.handler.client  # slack_sdk's Socket Mode client (not a Web API client)
        self.tracker = tracker or ConnectionTracker("slack")
        self.tracker.probe = self._socket.is_connected
        self.backoff = backoff or Backoff()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        """Open the websocket (the connection then lives in the background). A refused token is a
        `UserError`; an unreachable Slack is retried in the background (see the module docstring)."""
        delay = CHECK_INTERVAL_S
        try:
            self._connect()
        except _Refused as refused:
            self.tracker.failed(f"Slack refused the app-level token ({refused.error})")
            raise UserError(
                f"Slack refused to open a Socket Mode connection ({refused.error}): check CAPBOT_SLACK_APP_TOKEN, an "
                "app-level token with the connections:write scope, and that Socket Mode is on for the app",
                reason="slack_refused") from None
        except Exception as exc:
            delay = self._retry_later(exc)
        self._watcher = threading.Thread(target=self._watch, args=(delay,), name="capbot-slack-socket", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        """Stop trying, and close the websocket."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(10)
        self.handler.close()
        self.tracker.stopped()
        log.info("slack socket mode closed")

    def _watch(self, delay: float) -> None:
        while not self._stopping.wait(delay):
            delay = CHECK_INTERVAL_S
            if self._socket.is_connected():
                continue
            try:
                self._connect()
            except _Refused as refused:
                self.tracker.failed(f"Slack refused the app-level token ({refused.error})")
                log.error("Slack refused the Socket Mode token; not trying again", extra={"error": refused.error})
                return
            except Exception as exc:
                delay = self._retry_later(exc)

    def _connect(self) -> None:
        was_connected = self.tracker.state().state == CONNECTED
        self.tracker.connecting()
        try:
            self._socket.connect_to_new_endpoint()  # under the client's lock: its own monitor may race us
        except SlackApiError as exc:
            error = exc.response.get("error", "unknown_error") if exc.response is not None else "unknown_error"
            if error in REFUSALS:
                raise _Refused(error) from exc
            raise
        if not self._socket.is_connected():
            raise ConnectionError("the websocket did not open")
        self.backoff.reset()
        self.tracker.connected()
        log.info("slack socket mode connected" if not was_connected else "slack socket mode reconnected")

    def _retry_later(self, exc: Exception) -> float:
        delay = self.backoff.next_delay()
        error = f"{type(exc).__name__}: {exc}"[:200]
        self.tracker.retrying(f"cannot reach Slack ({error})", delay)
        log.warning("cannot reach Slack for Socket Mode, trying again", extra={"error": error, "wait_s": round(delay, 1)})
        return delay
