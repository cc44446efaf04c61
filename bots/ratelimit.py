"""Per-user rate limits: at most N requests per sliding window, with the wait until the next slot."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Hashable

Clock = Callable[[], float]  # seconds, monotonic


@dataclass(frozen=True)
class RateDecision:
    """Whether a request may go ahead, and if not how long until it may."""

    allowed: bool
    retry_after_s: float = 0.0
    at: float | None = None  # an allowed request's slot (pass it to `refund` to give that slot back)


class RateLimiter:
    """A sliding-window limiter keyed by user; thread-safe; the clock is injectable for tests."""

    def __init__(self, per_window: int, window_s: float = 60.0, clock: Clock | None = None) -> None:
        if per_window < 1:
            raise ValueError("per_window must be >= 1")
        self.per_window = per_window
        self.window_s = window_s
        self._clock = clock or time.monotonic
        self._hits: dict[Hashable, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: Hashable) -> RateDecision:
        """Count one request for `key` if it fits in the window; otherwise say how long to wait."""
        now = self._clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.per_window:
                return RateDecision(False, retry_after_s=max(0.0, hits[0] + self.window_s - now))
            hits.append(now)
            return RateDecision(True, at=now)

    def peek(self, key: Hashable) -> RateDecision:
        """Whether a request for `key` would fit now, without counting one."""
        now = self._clock()
        with self._lock:
            hits = [t for t in self._hits.get(key, ()) if t > now - self.window_s]
            if len(hits) >= self.per_window:
                return RateDecision(False, retry_after_s=max(0.0, hits[0] + self.window_s - now))
            return RateDecision(True)

    def refund(self, key: Hashable, at: float | None = None) -> None:
        """Give back the slot taken `at` (a `RateDecision.at`), or the latest one, of `key`: a request that was
        counted but never served."""
        with self._lock:
            hits = self._hits.get(key)
            if not hits:
                return
            if at is None:
                hits.pop()
            elif at in hits:
                hits.remove(at)
