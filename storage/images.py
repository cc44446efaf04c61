"""Images: one row per distinct content (SHA-256); the bytes go to a `BlobStore`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from storage._sql import check_platform, insert_ignoring_conflicts
from storage.blobs import BlobStore, check_sha256, sha256_of
from storage.clock import utcnow
from storage.errors import InvalidArgument
from storage.models import Image


@dataclass(frozen=True)
class ImageRecord:
    """An image's metadata as stored; `sha256` is also its blob key."""

    sha256: str
    size_bytes: int
    format: str
    width: int
    height: int
    first_platform: str | None
    first_workspace_id: str | None
    first_channel_id: str | None
    first_seen_at: datetime
    blob_removed_at: datetime | None = None  # when its file left the blob store (or was never written)


def _record(row: Image) -> ImageRecord:
    return ImageRecord(
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        format=row.format,
        width=row.width,
        height=row.height,
        first_platform=row.first_platform,
        first_workspace_id=row.first_workspace_id,
        first_channel_id=row.first_channel_id,
        first_seen_at=row.first_seen_at,
        blob_removed_at=row.blob_removed_at,
    )


def store_image(
    session: Session,
    blobs: BlobStore,
    data: bytes,
    *,
    format: str,
    width: int,
    height: int,
    platform: str | None = None,
    workspace_id: str | None = None,
    channel_id: str | None = None,
    now: datetime | None = None,
) -> ImageRecord:
    """Record the image and put `data` in the blob store (idempotent: the first sighting is kept).

    The caller has already validated the bytes (inference.images) and passes what it decoded. The row
    comes first and the bytes second, inside the caller's transaction: a rolled-back transaction leaves
    at most an unreferenced blob, and a concurrent `forget_user` that just deleted this image's blob
    cannot leave the new row without its bytes.
    """
    record = record_image(
        session,
        sha256=sha256_of(data),
        size_bytes=len(data),
        format=format,
        width=width,
        height=height,
        platform=platform,
        workspace_id=workspace_id,
        channel_id=channel_id,
        now=now,
    )
    blobs.put(data)
    return _blob_back(session, record)


def record_image(
    session: Session,
    *,
    sha256: str,
    size_bytes: int,
    format: str,
    width: int,
    height: int,
    platform: str | None = None,
    workspace_id: str | None = None,
    channel_id: str | None = None,
    now: datetime | None = None,
) -> ImageRecord:
    """Record image metadata for bytes already in the blob store; returns the stored (first) record."""
    check_sha256(sha256)
    if platform is not None:
        check_platform(platform)
    insert_ignoring_conflicts(
        session,
        Image.__table__,
        {
            "sha256": sha256,
            "size_bytes": size_bytes,
            "format": format.lower(),
            "width": width,
            "height": height,
            "first_platform": platform,
            "first_workspace_id": workspace_id,
            "first_channel_id": channel_id,
            "first_seen_at": now or utcnow(),
        },
    )
    row = session.get(Image, sha256, populate_existing=True)
    assert row is not None  # inserted above or already there
    return _record(row)


def record_image_without_blob(
    session: Session,
    blobs: BlobStore,
    *,
    sha256: str,
    size_bytes: int,
    format: str,
    width: int,
    height: int,
    platform: str | None = None,
    workspace_id: str | None = None,
    channel_id: str | None = None,
    now: datetime | None = None,
) -> ImageRecord:
    """Record an image whose bytes are not kept (a community keeping no images). A file already in the blob
    store, for another community's caption of the same image, stays."""
    record_image(session, sha256=sha256, size_bytes=size_bytes, format=format, width=width, height=height,
                 platform=platform, workspace_id=workspace_id, channel_id=channel_id, now=now)
    row = session.get(Image, sha256)
    assert row is not None
    if row.blob_removed_at is None and not blobs.exists(sha256):
        row.blob_removed_at = now or utcnow()
        session.flush()
    return _record(row)


def restore_blob(session: Session, blobs: BlobStore, sha256: str, data: bytes) -> None:
    """Put an image's bytes back in the blob store (a correction arrived for an image not kept)."""
    if sha256_of(data) != sha256:
        raise InvalidArgument("the bytes are not the image they claim to be", reason="sha_mismatch")
    blobs.put(data)
    row = session.get(Image, sha256)
    if row is not None:
        _blob_back(session, _record(row))


def mark_blob_removed(session: Session, sha256: str, *, now: datetime | None = None) -> None:
    """Note that the image's file has left the blob store (the row stays)."""
    row = session.get(Image, check_sha256(sha256))
    if row is not None:
        row.blob_removed_at = now or utcnow()
        session.flush()


def get_image(session: Session, sha256: str) -> ImageRecord | None:
    """The image with that SHA-256, or None."""
    row = session.get(Image, check_sha256(sha256))
    return None if row is None else _record(row)


def _blob_back(session: Session, record: ImageRecord) -> ImageRecord:
    """Clear `blob_removed_at` after the bytes went (back) into the blob store."""
    if record.blob_removed_at is None:
        return record
    row = session.get(Image, record.sha256)
    assert row is not None
    row.blob_removed_at = None
    session.flush()
    return _record(row)
