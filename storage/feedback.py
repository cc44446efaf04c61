"""Export accepted corrections as training rows.

Two views of the same corrections:
- `export_corrections`: every accepted correction, one per user and image (storage keeps one accepted
  correction per platform + user id and image). Retraining and `capbot feedback export` read this and
  resolve several users' corrections of one image by consensus (`training.data.screen`), since judging
  agreement needs the training side's word rules;
- `export_feedback`: one row per image, the latest accepted correction (a quick look; the web tests use it).
Corrections by opted-out users, and corrections of captions made in a community that does not consent to
training (storage.communities; `consent_default` for those that never chose), are excluded before choosing
(so another user's earlier correction of the same image can still be used); images whose blob is missing
are skipped with a warning.
`FeedbackRow` is the one feedback type from here to training (`storage.feedback_file` writes and reads
it as JSONL or CSV; retraining splits, mixes and mines renames from it).

Each row says how many distinct users (platform + user id) stand behind the image's feedback. A user is
who the platform says: a Slack or Discord account, an API key, or, for anonymous web callers, one client
address, so one address correcting an image many times (new uploads, no cookies) counts once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Select, and_, exists, func, select
from sqlalchemy.orm import Session

from storage.blobs import BlobStore
from storage.communities import consented
from storage.models import Caption, Correction, UserOptOut

_UNDATED = datetime.min.replace(tzinfo=timezone.utc)  # rows made by hand have no time

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedbackRow:
    """One training example from user feedback: an image and the caption a user said is right for it."""

    image_sha256: str  # content address in the blob store
    image_path: Path  # where the blob store keeps the bytes
    caption: str  # the corrected caption (validated and whitespace-normalised when it was stored)
    model_caption: str = ""  # what the model had said: retraining mines systematic renames from the pair
    platform: str = ""  # who corrected it (platform + user id): a rename needs several distinct users
    user_id: str = ""
    correction_id: int | None = None  # None for rows not read from the database (hand-made files, tests)
    created_at: datetime | None = None  # when the correction was made
    users: int = 1  # distinct users with an accepted correction of this image in the export's window
    # Users ("platform:user_id") whose corrections of this image agree with `caption` (consensus fills it
    # in; empty for a single correction not yet resolved): rename evidence counts each of them.
    supporters: tuple[str, ...] = ()

    @property
    def order(self) -> tuple[datetime, int]:
        """Sort key, oldest first: when the correction was made (undated rows before all others), then its id."""
        return (self.created_at or _UNDATED, self.correction_id or 0)

    @property
    def user(self) -> str:
        """The correcting user as one key, unique across platforms ("slack:U123")."""
        return f"{self.platform}:{self.user_id}"


def _accepted_corrections(since: datetime | None, until: datetime | None,
                          consent_default: bool) -> Select:  # type: ignore[type-arg]
    opted_out = exists().where(
        and_(UserOptOut.platform == Correction.platform, UserOptOut.user_id == Correction.user_id)
    )
    consenting = exists().where(and_(Caption.id == Correction.caption_id, consented(consent_default)))
    statement = select(Correction).where(Correction.status == "accepted", ~opted_out, consenting)
    if since is not None:
        statement = statement.where(Correction.created_at > since)
    if until is not None:
        statement = statement.where(Correction.created_at <= until)
    return statement


def _latest_per_image(since: datetime | None, until: datetime | None,
                      consent_default: bool) -> Select:  # type: ignore[type-arg]
    candidates = _accepted_corrections(since, until, consent_default).subquery()
    ranked = select(
        candidates.c.id,
        func.row_number().over(
            partition_by=candidates.c.image_sha256,
            order_by=(candidates.c.created_at.desc(), candidates.c.id.desc()),
        ).label("rank"),
    ).subquery()
    latest = select(ranked.c.id).where(ranked.c.rank == 1).subquery()
    return _with_model_caption_and_users(latest, since, until, consent_default)


def _users_per_image(since: datetime | None, until: datetime | None,
                     consent_default: bool):  # type: ignore[no-untyped-def]
    """image_sha256 -> how many distinct (platform, user) pairs have an exportable correction of it."""
    candidates = _accepted_corrections(since, until, consent_default).subquery()
    pairs = select(candidates.c.image_sha256, candidates.c.platform, candidates.c.user_id).distinct().subquery()
    return (
        select(pairs.c.image_sha256, func.count().label("users"))
        .group_by(pairs.c.image_sha256)
        .subquery()
    )


def _every_accepted(since: datetime | None, until: datetime | None,
                    consent_default: bool) -> Select:  # type: ignore[type-arg]
    chosen = _accepted_corrections(since, until, consent_default).subquery()
    return _with_model_caption_and_users(chosen, since, until, consent_default)


def _with_model_caption_and_users(chosen, since: datetime | None, until: datetime | None,  # type: ignore[no-untyped-def]
                                  consent_default: bool) -> Select:  # type: ignore[type-arg]
    """(correction, the caption it replaced, distinct users of its image) for the corrections whose ids
    `chosen` (a subquery with an `id` column) holds, oldest first."""
    users = _users_per_image(since, until, consent_default)
    return (
        select(Correction, Caption.text, users.c.users)
        .join(chosen, chosen.c.id == Correction.id)
        .join(Caption, Caption.id == Correction.caption_id)
        .join(users, users.c.image_sha256 == Correction.image_sha256)
        .order_by(Correction.created_at, Correction.id)
    )


def export_corrections(
    session: Session, blobs: BlobStore, *, since: datetime | None = None, until: datetime | None = None,
    consent_default: bool = True,
) -> list[FeedbackRow]:
    """Every accepted correction created after `since` (and up to `until`), one per user and image, oldest
    first: the input to consensus (`training.data.consensus`). `consent_default`: whether communities that
    never chose consent to training (CAPBOT_TRAINING_CONSENT_DEFAULT)."""
    return _rows(session.execute(_every_accepted(since, until, consent_default)), blobs)


def export_feedback(
    session: Session, blobs: BlobStore, *, since: datetime | None = None, until: datetime | None = None,
    consent_default: bool = True,
) -> list[FeedbackRow]:
    """Accepted corrections created after `since` (and up to `until`), one per image (the latest), oldest
    first."""
    return _rows(session.execute(_latest_per_image(since, until, consent_default)), blobs)


def _rows(results, blobs: BlobStore) -> list[FeedbackRow]:  # type: ignore[no-untyped-def]
    rows: list[FeedbackRow] = []
    present: dict[str, bool] = {}  # one blob check (and one warning) per image, however many corrections
    for correction, model_caption, users in results:
        sha = correction.image_sha256
        if sha not in present:
            present[sha] = blobs.exists(sha)
            if not present[sha]:
                log.warning("feedback image blob missing; skipped", extra={"image_sha256": sha})
        if not present[sha]:
            continue
        rows.append(FeedbackRow(
            image_sha256=correction.image_sha256,
            image_path=blobs.path(correction.image_sha256),
            caption=correction.text,
            model_caption=model_caption,
            platform=correction.platform,
            user_id=correction.user_id,
            correction_id=correction.id,
            created_at=correction.created_at,
            users=users,
        ))
    return rows


def count_feedback(session: Session, *, since: datetime | None = None, consent_default: bool = True) -> int:
    """How many images have exportable feedback since `since` (cheap: no blob checks)."""
    candidates = _accepted_corrections(since, None, consent_default).subquery()
    return session.scalar(select(func.count(func.distinct(candidates.c.image_sha256)))) or 0
