"""The embedded retraining schedule: a cron expression runs a job in a background thread, one at a time.

The composition root (`capbot/app.py`) calls `start_scheduler(settings.retrain_cron, job)` when a cron
expression is configured and `stop_scheduler(...)` on shutdown. Inside one process APScheduler's
`max_instances=1` skips a tick while the previous run is still going; across processes the run lock in
`training.lock` (taken by `retrain` itself) keeps runs from overlapping.
"""

from __future__ import annotations

import logging
from typing import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from storage.errors import UserError

log = logging.getLogger(__name__)

JOB_ID = "capbot-retrain"


class InvalidCron(UserError):
    """The configured crontab expression does not parse."""

    def __init__(self, expr: str, why: str, setting: str = "retrain_cron") -> None:
        super().__init__(
            f"{setting} {expr!r} is not a valid crontab expression (minute hour day month weekday): {why}",
            reason="invalid_cron",
        )


_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _weekday_part(part: str) -> str:
    # crontab counts weekdays from Sunday = 0 (7 is Sunday too); APScheduler counts from Monday = 0,
    # so numeric parts become day names, which both agree on.
    if not any(ch.isdigit() for ch in part):
        return part
    span, _, step = part.partition("/")
    if span == "*":
        lo, hi = 0, 6
    elif "-" in span:
        lo, hi = (int(x) for x in span.split("-", 1))
    else:
        lo = hi = int(span)
        if step:
            hi = 6
    if not (0 <= lo <= 7 and 0 <= hi <= 7 and lo <= hi):
        raise ValueError(f"day of week {part!r} is outside 0-7")
    days = range(lo, hi + 1, int(step) if step else 1)
    return ",".join(dict.fromkeys(_DAY_NAMES[d % 7] for d in days))


def parse_cron(expr: str, timezone: str = "UTC", *, setting: str = "retrain_cron") -> CronTrigger:
    """A CronTrigger for a 5-field crontab expression (crontab's weekday numbering), or `InvalidCron`
    (naming `setting`, the setting the expression came from)."""
    fields = expr.split()
    try:
        if len(fields) != 5:
            raise ValueError(f"expected 5 fields, got {len(fields)}")
        minute, hour, day, month, weekday = fields
        weekday = ",".join(_weekday_part(p) for p in weekday.split(","))
        return CronTrigger(
            minute=minute, hour=hour, day=day, month=month, day_of_week=weekday, timezone=timezone
        )
    except (ValueError, TypeError) as exc:
        raise InvalidCron(expr, str(exc), setting) from None


def _guarded(job: Callable[[], object], name: str) -> Callable[[], None]:
    # A scheduled run has no one to show an error to: log it and keep the schedule alive.
    def run() -> None:
        log.info("scheduled %s starting", name)
        try:
            result = job()
            log.info("scheduled %s finished", name, extra={"result": repr(result)})
        except UserError as exc:
            log.warning("scheduled %s stopped: %s", name, exc.message, extra={"reason": exc.reason})
        except Exception:
            log.exception("scheduled %s failed", name)

    return run


def start_scheduler(cron: str, job: Callable[[], object], *, timezone: str = "UTC",
                    name: str = "retrain") -> BackgroundScheduler:
    """Start a background scheduler that calls `job()` on the crontab `cron`; returns it for `stop_scheduler`.

    `name` tells schedules apart in logs and job ids (the review digest uses "digest"; its cron setting is
    `{name}_cron`).
    """
    trigger = parse_cron(cron, timezone, setting=f"{name}_cron")
    scheduler = BackgroundScheduler(timezone=timezone)
    scheduler.add_job(
        _guarded(job, name), trigger, id=_job_id(name), name=name,
        max_instances=1,  # a tick during a run is skipped, not queued
        coalesce=True,  # after downtime, missed ticks collapse into one run
        misfire_grace_time=3600,
    )
    scheduler.start()
    log.info("%s schedule started", name, extra={"cron": cron, "next_run": str(next_run_time(scheduler, name))})
    return scheduler


def _job_id(name: str) -> str:
    return JOB_ID if name == "retrain" else f"capbot-{name}"


def next_run_time(scheduler: BackgroundScheduler, name: str = "retrain"):
    """When the `name` job fires next (a timezone-aware datetime), or None when it is not scheduled."""
    job = scheduler.get_job(_job_id(name))
    return job.next_run_time if job else None


def stop_scheduler(scheduler: BackgroundScheduler | None, *, wait: bool = True) -> None:
    """Stop the schedule; with `wait`, let a run in progress finish first."""
    if scheduler is not None and scheduler.running:
        names = [job.name for job in scheduler.get_jobs()]
        scheduler.shutdown(wait=wait)
        log.info("%s schedule stopped", names[0] if names else "retrain")
