"""A platform connection's reported state and the backoff between attempts."""

from __future__ import annotations

import random

from bots.connection import Backoff, ConnectionTracker


def test_backoff_doubles_with_jitter_up_to_its_cap_and_starts_over_after_a_success():
    backoff = Backoff(1.0, 8.0, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, full in zip(delays, [1, 2, 4, 8, 8, 8]):
        assert full / 2 <= delay <= full
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_tracker_counts_failures_and_asks_a_probe_whether_a_connection_still_holds():
    clock = iter(range(100))
    tracker = ConnectionTracker("slack", clock=lambda: next(clock))
    assert tracker.state().state == "connecting"
    tracker.retrying("cannot reach Slack (refused)", 2.4)
    tracker.connecting()  # an attempt while retrying is one of the retries
    tracker.retrying("cannot reach Slack (refused)", 4.1)
    state = tracker.state()
    assert (state.state, state.failures, state.detail) == ("retrying", 2, "cannot reach Slack (refused); trying again in 4 s")
    alive = [True]
    tracker.probe = lambda: alive[0]
    tracker.connected()
    assert tracker.state().connected and tracker.state().failures == 2
    alive[0] = False
    assert tracker.state().state == "retrying" and "dropped" in tracker.state().detail
    tracker.probe = lambda: 1 / 0  # a probe that cannot say means not connected
    assert not tracker.state().connected
