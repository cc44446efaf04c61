"""The work queue and the rate limiter on their own."""

from __future__ import annotations

import threading

import pytest

from bots.ratelimit import RateLimiter
from bots.work_queue import QueueFull, WorkQueue


def test_queue_runs_jobs_in_order_and_returns_results():
    queue = WorkQueue(workers=1, maxsize=10)
    done = []
    futures = [queue.submit(lambda i=i: done.append(i) or i * i) for i in range(10)]
    assert [f.result(timeout=5) for f in futures] == [i * i for i in range(10)]
    assert done == list(range(10))
    queue.close()


def test_full_queue_raises_at_once_and_exceptions_reach_the_future():
    gate, started = threading.Event(), threading.Event()
    queue = WorkQueue(workers=1, maxsize=2)
    running = queue.submit(lambda: started.set() or gate.wait())
    assert started.wait(5)
    waiting = [queue.submit(lambda: 1 / 0) for _ in range(2)]
    with pytest.raises(QueueFull):
        queue.submit(lambda: None)
    assert queue.pending() == 2
    gate.set()
    assert running.result(timeout=5) is True
    for future in waiting:
        with pytest.raises(ZeroDivisionError):
            future.result(timeout=5)
    queue.close()


def test_close_drains_then_refuses():
    queue = WorkQueue(workers=2, maxsize=8)
    futures = [queue.submit(lambda i=i: i) for i in range(8)]
    queue.close()
    assert [f.result(timeout=0) for f in futures] == list(range(8))
    with pytest.raises(QueueFull):
        queue.submit(lambda: None)


def test_rate_limiter_window_and_refund():
    now = [0.0]
    limiter = RateLimiter(2, 60, clock=lambda: now[0])
    assert limiter.check("a").allowed and limiter.check("a").allowed
    third = limiter.check("a")
    assert not third.allowed and third.retry_after_s == pytest.approx(60)
    assert limiter.check("b").allowed
    now[0] = 30
    limiter.refund("a")
    assert limiter.check("a").allowed
    now[0] = 60.5  # the first hit (t=0) has left the window
    assert limiter.check("a").allowed
    assert not limiter.check("a").allowed
