"""Processed platform events: a retried delivery is recognised and never answered twice."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.orm import Session

from storage._sql import check_platform, insert_ignoring_conflicts
from storage.clock import utcnow
from storage.errors import InvalidArgument
from storage.models import ProcessedEvent


def mark_event_processed(session: Session, platform: str, event_id: str, *, now: datetime | None = None) -> bool:
    """Claim an event: True the first time (handle it), False for a duplicate (ignore it).

    Safe under concurrent duplicates: the (platform, event_id) primary key decides, and on Postgres
    a second transaction claiming the same id waits for the first and then gets False. The claim is
    part of the caller's transaction: commit it (a short session of its own) before slow work if a
    crash during that work should NOT lead to the retried delivery being handled.
    """
    check_platform(platform)
    if not event_id:
        raise InvalidArgument("an event id is required", reason="bad_event_id")
    return insert_ignoring_conflicts(
        session,
        ProcessedEvent.__table__,
        {"platform": platform, "event_id": str(event_id), "processed_at": now or utcnow()},
    )


def prune_processed_events(session: Session, *, older_than: datetime) -> int:
    """Forget events processed before `older_than` (platforms stop retrying within hours); returns the count."""
    result = session.execute(delete(ProcessedEvent).where(ProcessedEvent.processed_at < older_than))
    return result.rowcount  # type: ignore[attr-defined,no-any-return]
