"""Image bytes held in memory, not on disk, for communities that keep no images (retention 0).

A caption's image is written to the blob store only when someone corrects or confirms the caption; until
then its bytes wait here, for `ttl_s` at most, within `max_bytes` in all (the oldest go first). They live in
this process only: a restart, or a correction that reaches another process (another Modal web container),
finds nothing, and the correction is refused with a reason instead of being stored without its image.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable

DEFAULT_MAX_BYTES = 256 * 1024 * 1024


class ImageHold:
    """A thread-safe, size- and time-bounded map from SHA-256 to image bytes."""

    def __init__(self, ttl_s: float, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()  # oldest first
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, sha: str, data: bytes) -> None:
        """Hold `data` (again: its time starts over); an image larger than the whole hold is not held."""
        if len(data) > self.max_bytes:
            return
        with self._lock:
            self._drop(sha)
            self._items[sha] = (self._clock() + self.ttl_s, data)
            self._bytes += len(data)
            self._expire()
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._items)))

    def get(self, sha: str) -> bytes | None:
        """The bytes held for `sha`, or None (never held, expired or pushed out)."""
        with self._lock:
            self._expire()
            item = self._items.get(sha)
            return None if item is None else item[1]

    def discard(self, shas: set[str] | list[str]) -> None:
        """Forget these images at once (their user asked to be forgotten)."""
        with self._lock:
            for sha in shas:
                self._drop(sha)

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._items)

    def _expire(self) -> None:
        now = self._clock()
        while self._items:
            sha, (deadline, _) = next(iter(self._items.items()))
            if deadline > now:
                break
            self._drop(sha)

    def _drop(self, sha: str) -> None:
        item = self._items.pop(sha, None)
        if item is not None:
            self._bytes -= len(item[1])
