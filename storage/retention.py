"""The retention sweep: remove the image files of captions nobody corrected once they are past retention.

An image's file is due when every caption of it is older than the retention of the community it was posted
in (the stricter of CAPBOT_IMAGE_RETENTION_DAYS and the community's `/caption retention`; 0 = keep none). The
rows stay (images, captions): only the file goes, and `images.blob_removed_at` says when.

Never removed:
- an image with an accepted correction or confirmation: it is training data until its user forgets it;
- while a retraining run is running, an image with any correction at all (the run exported it; a correction
  withdrawn since must not pull the file from under its training);
- an image in an open review (storage.reviews: the review digest asked people to correct it).

Races with corrections are settled by the image row's lock: the sweep locks the rows it removes and looks
for corrections again after the lock; a correction takes the same lock first (bots.store), and then finds
the file gone or the sweep finds the correction.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session

from storage import communities, reviews
from storage.blobs import BlobStore
from storage.clock import utcnow
from storage.models import Caption, Correction, Image, TrainingRun

log = logging.getLogger(__name__)

BATCH = 500  # images per query: within every backend's parameter limit


@dataclass
class SweepResult:
    """What one sweep did (or, dry, would do)."""

    removed: int = 0  # image files deleted
    kept_for_training: int = 0  # past retention, kept while a retraining run may read them
    kept_for_review: int = 0  # past retention, kept for an open review
    removed_shas: list[str] = field(default_factory=list)


def sweep_images(session: Session, blobs: BlobStore, *, retention_days: int | None, now: datetime | None = None,
                 dry_run: bool = False) -> SweepResult:
    """Remove the files of uncorrected images past their retention (module docstring); the caller commits.

    `retention_days`: the operator's retention (None: no limit, though communities may set one)."""
    now = now or utcnow()
    choices = communities.retention_choices(session)
    shortest = min([d for d in (retention_days, *choices.values()) if d is not None], default=None)
    result = SweepResult()
    if shortest is None:
        return result  # nothing anywhere has a limit
    training = _training_running(session)
    in_review = reviews.open_reviews(session, now=now)
    candidates = _candidates(session, now - timedelta(days=shortest))
    for start in range(0, len(candidates), BATCH):
        batch = candidates[start:start + BATCH]
        due = _due(session, batch, retention_days, choices, now)
        due = _unprotected(session, due, training, in_review, result)
        if due and not dry_run:
            due = _remove(session, blobs, due, now)
        result.removed += len(due)
        result.removed_shas.extend(due)
    log.info("retention sweep", extra={"removed": result.removed, "dry_run": dry_run,
                                       "kept_for_training": result.kept_for_training,
                                       "kept_for_review": result.kept_for_review})
    return result


def _uncorrected():  # type: ignore[no-untyped-def]
    return ~exists().where(and_(Correction.image_sha256 == Image.sha256, Correction.status == "accepted"))


def _candidates(session: Session, oldest_cutoff: datetime) -> list[str]:
    """Images with a file, no accepted answer, first seen before the shortest retention's cutoff."""
    return list(session.scalars(
        select(Image.sha256)
        .where(Image.blob_removed_at.is_(None), Image.first_seen_at <= oldest_cutoff, _uncorrected())
        .order_by(Image.sha256)
    ))


def _due(session: Session, shas: list[str], operator_days: int | None, choices: dict[tuple[str, str], int],
         now: datetime) -> list[str]:
    """Those of `shas` whose every caption is past its community's retention."""
    limits: dict[str, list[datetime | None]] = defaultdict(list)  # per image: each caption's keep-until
    rows = session.execute(select(Caption.image_sha256, Caption.platform, Caption.workspace_id, Caption.created_at)
                           .where(Caption.image_sha256.in_(shas)))
    for sha, platform, workspace, created in rows:
        days = communities.effective_retention(operator_days, choices.get((platform, workspace or "")))
        limits[sha].append(None if days is None else created + timedelta(days=days))
    uncaptioned = [sha for sha in shas if sha not in limits]
    if uncaptioned:  # left behind by a failed write: the operator's retention from when it was first seen
        for sha, seen in session.execute(select(Image.sha256, Image.first_seen_at).where(Image.sha256.in_(uncaptioned))):
            limits[sha].append(None if operator_days is None else seen + timedelta(days=operator_days))
    return [sha for sha in shas if _past(limits[sha], now)]


def _past(keep_until: list[datetime | None], now: datetime) -> bool:
    return bool(keep_until) and all(until is not None and until <= now for until in keep_until)


def _training_running(session: Session) -> bool:
    return session.scalar(select(exists().where(TrainingRun.status == "running"))) or False


def _unprotected(session: Session, due: list[str], training: bool, in_review: set[str],
                 result: SweepResult) -> list[str]:
    reviewed = [sha for sha in due if sha in in_review]
    result.kept_for_review += len(reviewed)
    due = [sha for sha in due if sha not in in_review]
    if training and due:
        answered = set(session.scalars(select(Correction.image_sha256).where(Correction.image_sha256.in_(due))))
        result.kept_for_training += len(answered)
        due = [sha for sha in due if sha not in answered]
    return due


def _remove(session: Session, blobs: BlobStore, due: list[str], now: datetime) -> list[str]:
    """Lock the rows, drop any that gained an accepted answer meanwhile, delete the files, mark the rows."""
    locked = list(session.scalars(
        select(Image).where(Image.sha256.in_(due), Image.blob_removed_at.is_(None)).with_for_update()
    ))
    still = set(session.scalars(select(Image.sha256).where(Image.sha256.in_([i.sha256 for i in locked]),
                                                           _uncorrected())))
    removed = []
    for image in locked:
        if image.sha256 in still:
            blobs.delete(image.sha256)
            image.blob_removed_at = now
            removed.append(image.sha256)
    session.flush()
    return sorted(removed)
