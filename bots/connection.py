"""A platform connection's state (for /readyz and /metrics) and the backoff between attempts to open it.

Discord's gateway and Slack's Socket Mode are connections capbot opens itself. When the platform cannot be
reached (at start-up or later) the bot keeps trying, waiting longer each time (`Backoff`), and says where it
stands through its `ConnectionTracker`; the web server reads the trackers. Thread-safe: Socket Mode runs in
threads, Discord on the event loop.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

CONNECTING, CONNECTED, RETRYING, FAILED, STOPPED = "connecting", "connected", "retrying", "failed", "stopped"


@dataclass(frozen=True)
class ConnectionState:
    """Where one platform connection stands."""

    platform: str  # "discord", "slack"
    state: str  # connecting | connected | retrying (waiting to try again) | failed (gave up) | stopped
    detail: str  # why, in a sentence (never a token)
    failures: int = 0  # failed attempts since the process started
    since: float = 0.0  # when it entered this state (Unix time)

    @property
    def connected(self) -> bool:
        return self.state == CONNECTED


class ConnectionTracker:
    """The state of one platform connection; the bot's runner reports, the web server reads `state()`.

    `probe`, when given, says whether an established connection is still alive (a client that reconnects on
    its own, like slack_sdk's Socket Mode client, may lose it between reports)."""

    def __init__(self, platform: str, *, clock: Callable[[], float] = time.time) -> None:
        self.platform = platform
        self._clock = clock
        self._lock = threading.Lock()
        self._state = ConnectionState(platform, CONNECTING, "not connected yet", since=clock())
        self.probe: Callable[[], bool] | None = None

    def state(self) -> ConnectionState:
        """The current state (a connected tracker whose probe says otherwise reads as retrying)."""
        with self._lock:
            state = self._state
        if state.state == CONNECTED and self.probe is not None and not _alive(self.probe):
            return replace(state, state=RETRYING, detail="the connection dropped; reconnecting")
        return state

    def connecting(self) -> None:
        """An attempt begins (while retrying, the state stays retrying: the attempt is one of the retries)."""
        with self._lock:
            if self._state.state == RETRYING:
                return
        self._set(CONNECTING, "connecting")

    def connected(self, detail: str = "connected") -> None:
        self._set(CONNECTED, detail)

    def retrying(self, error: str, wait_s: float) -> None:
        """An attempt failed with `error`; the next one is in `wait_s` seconds."""
        self._set(RETRYING, f"{error}; trying again in {wait_s:.0f} s", failed=True)

    def disconnected(self, detail: str) -> None:
        """The connection dropped and the client is reconnecting by itself."""
        self._set(RETRYING, detail)

    def failed(self, reason: str) -> None:
        """Gave up: the platform refused (a bad token); a person must fix the settings."""
        self._set(FAILED, reason, failed=True)

    def stopped(self) -> None:
        self._set(STOPPED, "stopped")

    def _set(self, state: str, detail: str, *, failed: bool = False) -> None:
        with self._lock:
            failures = self._state.failures + (1 if failed else 0)
            if state == self._state.state and detail == self._state.detail and not failed:
                return
            self._state = ConnectionState(self.platform, state, detail, failures, self._clock())


def _alive(probe: Callable[[], bool]) -> bool:
    try:
        return bool(probe())
    except Exception:  # a client mid-reconnect may fail to say; it is not connected then
        return False


class Backoff:
    """Exponential backoff with jitter: about `initial_s`, then twice as long each failure, at most `max_s`;
    `reset()` after a success. The jitter (half to full length) keeps many clients from retrying in step."""

    def __init__(self, initial_s: float = 1.0, max_s: float = 60.0, *, rng: random.Random | None = None) -> None:
        self.initial_s, self.max_s = initial_s, max_s
        self._rng = rng or random.Random()
        self._failures = 0

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt (counts one more failure)."""
        full = min(self.max_s, self.initial_s * 2 ** self._failures)
        self._failures += 1
        return full * self._rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self._failures = 0
