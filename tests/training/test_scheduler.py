"""The embedded retrain schedule: cron parsing, firing, one run at a time, clean stop."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES

from storage.errors import UserError
from training.scheduler import InvalidCron, JOB_ID, next_run_time, parse_cron, start_scheduler, stop_scheduler


def _fire_now(scheduler) -> None:
    scheduler.get_job(JOB_ID).modify(next_run_time=datetime.now(timezone.utc))
    scheduler.wakeup()


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _fire_until(scheduler, predicate, tries: int = 20) -> bool:
    for _ in range(tries):
        _fire_now(scheduler)
        if _wait_for(predicate, timeout=0.5):
            return True
    return False


def test_parse_cron_gives_the_next_matching_time():
    trigger = parse_cron("30 3 * * 0")  # Sundays 03:30 UTC
    after = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)  # a Thursday
    fire = trigger.get_next_fire_time(None, after)
    assert (fire.weekday(), fire.hour, fire.minute) == (6, 3, 30)
    assert fire - after < timedelta(days=7)


@pytest.mark.parametrize(
    ("weekday", "expected"),
    [("1-5", {0, 1, 2, 3, 4}), ("0,6", {6, 5}), ("7", {6}), ("*/2", {6, 1, 3, 5}), ("mon-fri", {0, 1, 2, 3, 4})],
)
def test_weekdays_follow_crontab_numbering(weekday, expected):
    trigger = parse_cron(f"0 12 * * {weekday}")
    fire, seen = datetime(2026, 11, 26, tzinfo=timezone.utc), set()
    for _ in range(len(expected) + 3):
        fire = trigger.get_next_fire_time(None, fire + timedelta(seconds=1))
        seen.add(fire.weekday())  # Python: Monday = 0
    assert seen == expected


@pytest.mark.parametrize("expr", ["every sunday", "61 * * * *", "* * *", "0 3 * * 8"])
def test_invalid_cron_is_a_user_error(expr):
    with pytest.raises(InvalidCron) as info:
        start_scheduler(expr, lambda: None)
    assert info.value.reason == "invalid_cron" and expr in info.value.message


def test_scheduler_runs_the_job_once_at_a_time_and_survives_errors():
    calls, finished, release = [], [], threading.Event()

    def job():
        calls.append(time.monotonic())
        try:
            if len(calls) == 1:
                release.wait(10)  # the first run is slow
            if len(calls) == 2:
                raise UserError("too little feedback", reason="too_little_feedback")
        finally:
            finished.append(len(calls))

    scheduler = start_scheduler("0 3 * * 0", job)
    try:
        assert next_run_time(scheduler) > datetime.now(timezone.utc)
        _fire_now(scheduler)
        assert _wait_for(lambda: len(calls) == 1)
        skipped = threading.Event()
        scheduler.add_listener(lambda _event: skipped.set(), EVENT_JOB_MAX_INSTANCES)
        _fire_now(scheduler)  # a tick while the first run is still going: skipped, and the scheduler says so
        assert skipped.wait(10)
        assert len(calls) == 1
        release.set()
        assert _wait_for(lambda: len(finished) == 1)
        # The scheduler frees the instance slot just after the job returns: fire until the run starts.
        assert _fire_until(scheduler, lambda: len(calls) == 2)  # raises a UserError: logged, schedule kept
        assert _wait_for(lambda: len(finished) == 2)
        assert _fire_until(scheduler, lambda: len(calls) == 3)
        assert next_run_time(scheduler) is not None
    finally:
        release.set()
        stop_scheduler(scheduler)
    assert not scheduler.running
    stop_scheduler(scheduler)  # idempotent
