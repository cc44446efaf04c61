"""Open reviews: images the review digest asked people to correct. A review stays open for `REVIEW_OPEN`
after the digest posted it, and the retention sweep (storage.retention) keeps the image's file meanwhile,
so that a correction made from the digest still finds its image."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage._sql import insert_ignoring_conflicts
from storage.blobs import check_sha256
from storage.clock import utcnow
from storage.models import ReviewPost

REVIEW_OPEN = timedelta(days=7)


def record_review_posts(session: Session, shas: Iterable[str], *, now: datetime | None = None) -> None:
    """Note that these images were just posted for review (a later post opens the review again)."""
    now = now or utcnow()
    for sha in shas:
        if not insert_ignoring_conflicts(session, ReviewPost.__table__,
                                         {"image_sha256": check_sha256(sha), "posted_at": now}):
            row = session.get(ReviewPost, sha, populate_existing=True)
            assert row is not None
            row.posted_at = now
    session.flush()


def open_reviews(session: Session, *, now: datetime | None = None) -> set[str]:
    """The images whose review is still open."""
    since = (now or utcnow()) - REVIEW_OPEN
    return set(session.scalars(select(ReviewPost.image_sha256).where(ReviewPost.posted_at > since)))
