"""A pixel budget shared by every image decode in the process, so a burst of large legal images cannot run
the machine out of memory.

Decoding a picture needs its full-size pixels in memory (a 6000x6000 PNG: 108 MB as RGB, more while its mode
is converted), whatever the file's size; eight workers decoding such pictures at once need gigabytes. A
decode holds as many pixels of the budget as it will decode, from before its pixels are read until they are
shrunk to a working size (`inference.images`); a decode that does not fit waits for others to finish. One
image larger than the whole budget is admitted alone, so every image the pixel cap allows is still decoded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import logging
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

DEFAULT_MEGAPIXELS = 50.0  # one image at the 40-megapixel cap and a few small ones at once
# After a decode this large, freed memory is handed back to the system (see `_give_back_freed_memory`).
GIVE_BACK_PIXELS = 8_000_000


class DecodeBudget:
    """Admits decodes by pixel count: at most `capacity_pixels` held at once (one larger decode alone)."""

    def __init__(self, capacity_pixels: int) -> None:
        if capacity_pixels < 1:
            raise ValueError("a decode budget needs at least one pixel")
        self.capacity_pixels = capacity_pixels
        self._held = 0
        self._changed = threading.Condition()
        self._line: deque[int] = deque()  # waiting decodes, first come first served (a large one is not starved)
        self._tickets = itertools.count()

    @property
    def held_pixels(self) -> int:
        """Pixels held by decodes now."""
        with self._changed:
            return self._held

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Wait until `pixels` fit the budget (or nothing else is held), hold them for the block, give back."""
        pixels = max(0, min(pixels, self.capacity_pixels))
        with self._changed:
            ticket = next(self._tickets)
            self._line.append(ticket)
            try:
                self._changed.wait_for(lambda: self._line[0] == ticket and self._fits(pixels))
            except BaseException:  # interrupted while waiting: leave the line, or those behind wait forever
                self._line.remove(ticket)
                self._changed.notify_all()
                raise
            self._line.popleft()
            self._held += pixels
            self._changed.notify_all()  # the next in line may fit too
        try:
            yield
        finally:
            if pixels >= GIVE_BACK_PIXELS:
                _give_back_freed_memory()
            with self._changed:
                self._held -= pixels
                self._changed.notify_all()

    def _fits(self, pixels: int) -> bool:
        return self._held == 0 or self._held + pixels <= self.capacity_pixels


def _load_malloc_trim():  # type: ignore[no-untyped-def]
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc: its allocator keeps its own counsel
        return None


_malloc_trim = _load_malloc_trim()


def _give_back_freed_memory() -> None:
    """Return the memory a large decode freed to the system. glibc keeps freed blocks in the arena of the
    thread that freed them, and every worker thread has its own arena: without this, eight workers taking
    turns at one large image each keep its size resident (1.8 GB for 8 x 36 megapixels, measured), though
    only one decodes at a time. A few milliseconds, paid only after large images."""
    if _malloc_trim is not None:
        _malloc_trim(0)


_shared = DecodeBudget(int(DEFAULT_MEGAPIXELS * 1_000_000))
_shared_lock = threading.Lock()


def shared_budget() -> DecodeBudget:
    """The process's budget, which `inference.images.load_image` uses unless given another."""
    with _shared_lock:
        return _shared


def set_shared_budget(megapixels: float) -> DecodeBudget:
    """Replace the process's budget (at start-up, from settings); returns the new one."""
    global _shared
    budget = DecodeBudget(max(1, int(megapixels * 1_000_000)))
    with _shared_lock:
        _shared = budget
    return budget
