"""A bounded FIFO of jobs served by N worker threads; a full queue says so instead of blocking or dropping."""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Callable, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

_STOP = object()


class QueueFull(Exception):
    """The queue holds its maximum number of waiting jobs."""


class WorkQueue:
    """Runs submitted callables in order on `workers` daemon threads; at most `maxsize` wait."""

    def __init__(self, workers: int = 1, maxsize: int = 64, name: str = "capbot-work") -> None:
        self._jobs: queue.Queue = queue.Queue(maxsize=maxsize)
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], T]) -> Future:
        """Queue `fn`; return a future of its result. Raises `QueueFull` at once when the queue is full."""
        if self._closed:
            raise QueueFull("the work queue is shut down")
        future: Future = Future()
        try:
            self._jobs.put_nowait((fn, future))
        except queue.Full:
            raise QueueFull(f"{self._jobs.maxsize} jobs already waiting") from None
        return future

    def pending(self) -> int:
        """Jobs waiting (not yet started)."""
        return self._jobs.qsize()

    def close(self, wait: bool = True, timeout: float | None = 30.0) -> None:
        """Stop taking jobs; finish those queued, then stop the workers (optionally waiting for them)."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._jobs.put(_STOP)  # blocks only while the queue is full, i.e. until workers make room
        if wait:
            for thread in self._threads:
                thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is _STOP:
                return
            fn, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # the future carries it to whoever waits
                future.set_exception(exc)
