"""Forget a user: their corrections, their captions (with every correction of those), and the images
no one else references, blobs included.

Blobs are deleted only after the caller's transaction commits, so a rollback never leaves rows that
point at deleted bytes. Captions are matched on the user who posted/asked (`captions.user_id`).
An opt-out is kept: it is a wish about the future, not data about the past.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine, delete, event, select, union
from sqlalchemy.orm import Session

from storage._sql import check_platform
from storage.blobs import BlobStore
from storage.models import Caption, Correction, Image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForgetResult:
    """What `forget_user` deleted (blobs: scheduled for deletion once the transaction commits)."""

    corrections: int
    captions: int
    images: int
    blobs: int


def forget_user(session: Session, blobs: BlobStore, *, user_id: str, platform: str | None = None) -> ForgetResult:
    """Delete everything stored about `user_id` (on one platform, or all when `platform` is None)."""
    if platform is not None:
        check_platform(platform)

    def mine(model):  # type: ignore[no-untyped-def]
        condition = model.user_id == user_id
        return condition if platform is None else condition & (model.platform == platform)

    caption_ids = select(Caption.id).where(mine(Caption))
    touched = set(session.scalars(
        union(select(Caption.image_sha256).where(mine(Caption)), select(Correction.image_sha256).where(mine(Correction)))
    ))
    corrections = session.execute(
        delete(Correction).where(mine(Correction) | Correction.caption_id.in_(caption_ids))
    ).rowcount  # type: ignore[attr-defined]
    captions = session.execute(delete(Caption).where(mine(Caption))).rowcount  # type: ignore[attr-defined]
    orphans = _orphaned_images(session, touched)
    if orphans:
        session.execute(delete(Image).where(Image.sha256.in_(orphans)))
    _delete_blobs_after_commit(session, blobs, orphans)
    log.info("user forgotten", extra={"corrections": corrections, "captions": captions, "images": len(orphans)})
    return ForgetResult(corrections=corrections, captions=captions, images=len(orphans), blobs=len(orphans))


def _orphaned_images(session: Session, shas: set[str]) -> list[str]:
    if not shas:
        return []
    still_used = set(session.scalars(
        union(select(Caption.image_sha256).where(Caption.image_sha256.in_(shas)),
              select(Correction.image_sha256).where(Correction.image_sha256.in_(shas)))
    ))
    return sorted(shas - still_used)


_PENDING = "capbot_blobs_to_delete"


def _delete_blobs_after_commit(session: Session, blobs: BlobStore, shas: list[str]) -> None:
    if not shas:
        return
    if _PENDING not in session.info:
        session.info[_PENDING] = []
        event.listen(session, "after_commit", _delete_pending)
        event.listen(session, "after_soft_rollback", _discard_pending)
    session.info[_PENDING].append((blobs, list(shas)))


def _delete_pending(session: Session) -> None:
    pending, session.info[_PENDING] = session.info[_PENDING], []
    for blobs, shas in pending:
        doomed = _still_unrecorded(session, shas)
        for sha in doomed:
            blobs.delete(sha)
        log.info("blobs deleted", extra={"count": len(doomed), "kept": len(shas) - len(doomed)})


def _still_unrecorded(session: Session, shas: list[str]) -> list[str]:
    # Someone may have posted the same image again since the delete committed; keep its bytes then.
    bind = session.get_bind()
    if not isinstance(bind, Engine):
        return shas  # bound to a caller's connection: nothing else can run on it now
    with bind.connect() as connection:
        recorded = set(connection.scalars(select(Image.sha256).where(Image.sha256.in_(shas))))
    return [sha for sha in shas if sha not in recorded]


def _discard_pending(session: Session, _previous_transaction: object) -> None:
    # Rolled back (even a savepoint, to be safe): the rows may still exist, so their blobs must stay.
    # The worst case is an unreferenced blob, never a row without its bytes.
    session.info[_PENDING] = []
