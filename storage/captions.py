"""Captions the model produced: which image, which model version, for whom and where."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage._sql import check_platform, is_row_id
from storage.blobs import check_sha256
from storage.clock import utcnow
from storage.errors import InvalidArgument
from storage.models import Caption, Image


@dataclass(frozen=True)
class CaptionRecord:
    """A stored caption. `id` is what a "Suggest a better caption" control carries."""

    id: int
    image_sha256: str
    model_version: str
    text: str
    platform: str
    options: dict[str, Any] = field(default_factory=dict)
    latency_ms: float | None = None
    confidence: float | None = None  # 0..1, how sure the model was (None: not given)
    alternatives: tuple[str, ...] = ()  # other captions offered beside `text`, best first
    workspace_id: str | None = None
    channel_id: str | None = None
    user_id: str | None = None
    message_ref: str | None = None
    created_at: datetime | None = None


def _record(row: Caption) -> CaptionRecord:
    return CaptionRecord(
        id=row.id,
        image_sha256=row.image_sha256,
        model_version=row.model_version,
        text=row.text,
        platform=row.platform,
        options=dict(row.options or {}),
        latency_ms=row.latency_ms,
        confidence=row.confidence,
        alternatives=tuple(row.alternatives or ()),
        workspace_id=row.workspace_id,
        channel_id=row.channel_id,
        user_id=row.user_id,
        message_ref=row.message_ref,
        created_at=row.created_at,
    )


def record_caption(
    session: Session,
    *,
    image_sha256: str,
    text: str,
    model_version: str,
    platform: str,
    options: dict[str, Any] | None = None,
    latency_ms: float | None = None,
    confidence: float | None = None,
    alternatives: Sequence[str] = (),
    workspace_id: str | None = None,
    channel_id: str | None = None,
    user_id: str | None = None,
    message_ref: str | None = None,
    now: datetime | None = None,
) -> CaptionRecord:
    """Store a caption for an image already recorded (storage.images); returns it with its new id.

    `confidence` must lie in [0, 1] (or be None); `alternatives` are stored in the order given.
    """
    check_platform(platform)
    if confidence is not None and not 0.0 <= confidence <= 1.0:
        raise InvalidArgument(f"confidence must be between 0 and 1, got {confidence}", reason="bad_confidence")
    if session.get(Image, check_sha256(image_sha256)) is None:
        raise InvalidArgument(f"no image {image_sha256} recorded; store the image first", reason="unknown_image")
    row = Caption(
        image_sha256=image_sha256,
        model_version=model_version,
        text=text,
        options=dict(options or {}),
        latency_ms=latency_ms,
        confidence=confidence,
        alternatives=[str(a) for a in alternatives],
        platform=platform,
        workspace_id=workspace_id,
        channel_id=channel_id,
        user_id=user_id,
        message_ref=message_ref,
        created_at=now or utcnow(),
    )
    session.add(row)
    session.flush()  # assigns the id
    return _record(row)


def get_caption(session: Session, caption_id: int) -> CaptionRecord | None:
    """The caption with that id, or None (also for an id no row can have)."""
    row = session.get(Caption, caption_id) if is_row_id(caption_id) else None
    return None if row is None else _record(row)


def set_message_ref(session: Session, caption_id: int, message_ref: str) -> CaptionRecord:
    """Remember the bot's reply message for a caption (posted after the caption was recorded)."""
    row = session.get(Caption, caption_id) if is_row_id(caption_id) else None
    if row is None:
        raise InvalidArgument(f"no caption with id {caption_id}", reason="unknown_caption")
    row.message_ref = message_ref
    session.flush()
    return _record(row)


def find_caption_by_message(session: Session, *, platform: str, message_ref: str) -> CaptionRecord | None:
    """The newest caption the bot posted as `message_ref` on `platform` (for "correct this message")."""
    row = session.scalars(
        select(Caption)
        .where(Caption.platform == check_platform(platform), Caption.message_ref == message_ref)
        .order_by(Caption.id.desc())
        .limit(1)
    ).first()
    return None if row is None else _record(row)


def captions_for_image(session: Session, image_sha256: str) -> list[CaptionRecord]:
    """Every caption of one image, oldest first."""
    rows = session.scalars(
        select(Caption).where(Caption.image_sha256 == check_sha256(image_sha256)).order_by(Caption.id)
    )
    return [_record(row) for row in rows]
