"""Confirmations: a user says a caption is right.

A confirmation is feedback like a correction, and is stored as one: a `corrections` row with
kind="confirmation" whose text is the caption's own. So everything that reads users' answers counts it
without a second path: one accepted answer per user and image (a confirmation overrides the user's
correction of the image, a later correction overrides the confirmation), the export retraining reads (the
confirmed caption becomes a training example, and consensus weighs it against other users' corrections),
the review queue (a confirmed caption is less worth a look, `storage.queue`), forgetting a user.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage._sql import check_platform, is_row_id
from storage.clock import utcnow
from storage.corrections import CorrectionRecord, as_record, store_accepted_answer
from storage.errors import CorrectionRefused
from storage.models import Caption, Correction

log = logging.getLogger(__name__)

KIND = "confirmation"


def record_confirmation(session: Session, *, caption_id: int, user_id: str, platform: str | None = None,
                        now: datetime | None = None) -> CorrectionRecord:
    """Store that `user_id` says caption `caption_id` is right; the user's other accepted answer about the
    image (a correction, or a confirmation of another caption of it) is overridden. Confirming the same
    caption again changes nothing. Raises `CorrectionRefused` (unknown_caption, unknown_user)."""
    caption = session.get(Caption, caption_id) if is_row_id(caption_id) else None
    if caption is None:
        raise CorrectionRefused("That caption no longer exists, so it cannot be confirmed.", reason="unknown_caption")
    if not user_id:
        raise CorrectionRefused("Confirmations need to come from a user.", reason="unknown_user")
    platform = check_platform(platform or caption.platform)
    standing = _accepted_answer(session, caption.image_sha256, platform, user_id)
    if standing is not None and standing.kind == KIND and standing.caption_id == caption.id:
        return as_record(standing)
    row = store_accepted_answer(session, caption, platform=platform, user_id=user_id, text=caption.text,
                                now=now or utcnow(), kind=KIND)
    log.info("confirmation accepted", extra={"caption_id": caption.id, "correction_id": row.id})
    return as_record(row)


def _accepted_answer(session: Session, image_sha256: str, platform: str, user_id: str) -> Correction | None:
    return session.scalars(
        select(Correction).where(Correction.image_sha256 == image_sha256, Correction.platform == platform,
                                 Correction.user_id == user_id, Correction.status == "accepted")
        .order_by(Correction.id.desc())
    ).first()
