"""Training runs: when, on what data, with what outcome.

Statuses: running -> promoted (a version was trained and promoted) | not_promoted (trained, but the
gate kept the active version; `reason` says why) | failed (an error; `reason` says which). The same
words name the outcome in `training.retrain.RetrainResult` and `capbot retrain`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.clock import utcnow
from storage.errors import InvalidArgument
from storage.models import TrainingRun

RUNNING, PROMOTED, NOT_PROMOTED, FAILED = "running", "promoted", "not_promoted", "failed"
FINAL_STATUSES = (PROMOTED, NOT_PROMOTED, FAILED)


@dataclass(frozen=True)
class RunInfo:
    """A training run."""

    id: int
    status: str  # running | promoted | not_promoted | failed
    started_at: datetime
    finished_at: datetime | None = None
    reason: str | None = None
    base_version: str | None = None
    result_version: str | None = None
    feedback_since: datetime | None = None
    data_counts: dict[str, Any] = field(default_factory=dict)  # e.g. {"coco": 800, "feedback": 200}
    metrics: dict[str, Any] = field(default_factory=dict)


def _info(row: TrainingRun) -> RunInfo:
    return RunInfo(
        id=row.id,
        status=row.status,
        started_at=row.started_at,
        finished_at=row.finished_at,
        reason=row.reason,
        base_version=row.base_version,
        result_version=row.result_version,
        feedback_since=row.feedback_since,
        data_counts=dict(row.data_counts or {}),
        metrics=dict(row.metrics or {}),
    )


def start_run(
    session: Session,
    *,
    base_version: str | None = None,
    feedback_since: datetime | None = None,
    data_counts: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> RunInfo:
    """Record that a run started; returns it with its id."""
    row = TrainingRun(status=RUNNING, started_at=now or utcnow(), base_version=base_version,
                      feedback_since=feedback_since, data_counts=dict(data_counts or {}), metrics={})
    session.add(row)
    session.flush()
    return _info(row)


def finish_run(
    session: Session,
    run_id: int,
    *,
    status: str,
    result_version: str | None = None,
    metrics: dict[str, Any] | None = None,
    data_counts: dict[str, Any] | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> RunInfo:
    """Record a run's outcome (promoted / not_promoted / failed, with a reason for the latter two)."""
    if status not in FINAL_STATUSES:
        raise InvalidArgument(f"a run finishes as one of {', '.join(FINAL_STATUSES)}, not {status!r}",
                              reason="bad_status")
    row = session.get(TrainingRun, run_id)
    if row is None:
        raise InvalidArgument(f"no training run with id {run_id}", reason="unknown_run")
    row.status = status
    row.finished_at = now or utcnow()
    row.reason = reason
    if result_version is not None:
        row.result_version = result_version
    if metrics is not None:
        row.metrics = {**(row.metrics or {}), **metrics}
    if data_counts is not None:
        row.data_counts = {**(row.data_counts or {}), **data_counts}
    session.flush()
    return _info(row)


def get_run(session: Session, run_id: int) -> RunInfo | None:
    """The run with that id, or None."""
    row = session.get(TrainingRun, run_id)
    return None if row is None else _info(row)


def list_runs(session: Session, *, limit: int = 50, statuses: Sequence[str] | None = None) -> list[RunInfo]:
    """The most recent runs (only those with one of `statuses`, if given), newest first."""
    statement = select(TrainingRun).order_by(TrainingRun.started_at.desc(), TrainingRun.id.desc()).limit(limit)
    if statuses is not None:
        statement = statement.where(TrainingRun.status.in_(list(statuses)))
    return [_info(row) for row in session.scalars(statement)]


def last_promoted_run(session: Session) -> RunInfo | None:
    """The newest run whose version was promoted; its `started_at` bounds the feedback not yet learned.

    Use `started_at`, not `finished_at`: corrections that arrived while it trained were not in its data.
    """
    row = session.scalars(
        select(TrainingRun).where(TrainingRun.status == PROMOTED)
        .order_by(TrainingRun.started_at.desc(), TrainingRun.id.desc()).limit(1)
    ).first()
    return None if row is None else _info(row)
