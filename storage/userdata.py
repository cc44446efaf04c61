"""A person's own data as one zip file (`/caption mydata`, `capbot export-user`): their captions, their
corrections and confirmations, and the image files those refer to that are still kept.

Layout: `capbot-data.json` (everything but the images, described in `README.txt`) and `images/<sha256>.<format>`.
Images whose file is gone (past retention, or never kept) are listed with `"file": null` and `removed_at`.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage._sql import check_platform
from storage.blobs import BlobStore
from storage.clock import utcnow
from storage.models import Caption, Correction, Image, UserOptOut

FORMAT = "capbot-user-data/1"
DATA_FILE = "capbot-data.json"
README = """This is everything capbot stores about you{where}, exported {when}.

capbot-data.json holds:
- captions: the captions capbot made of images you posted or asked about (where, when, which model);
- corrections: your better captions ("kind": "correction") and your word that a caption was right
  ("kind": "confirmation"), with their status (accepted, or replaced by a later answer of yours, or withdrawn);
- images: every image those refer to; "file" names its copy in images/, or is null when capbot no longer
  keeps the file (then "removed_at" says since when);
- opted_out: the platforms where you opted out of auto-captions and training.

Ask capbot to forget you (/caption forget, or the operator's `capbot forget-user`) to delete all of it.
"""


@dataclass(frozen=True)
class ArchiveSummary:
    """What an archive holds."""

    captions: int
    corrections: int
    images: int  # image files included
    images_gone: int  # images referred to whose files are no longer kept (or left out: include_images=False)


@dataclass(frozen=True)
class UserArchive:
    """An archive in memory, for sending in a chat."""

    data: bytes
    filename: str
    summary: ArchiveSummary


def archive_name(user_id: str, platform: str | None) -> str:
    """The archive's file name, e.g. capbot-data-slack-U123.zip."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in user_id)[:64]
    return f"capbot-data-{platform + '-' if platform else ''}{safe}.zip"


def user_archive(session: Session, blobs: BlobStore, *, user_id: str, platform: str | None = None,
                 include_images: bool = True, now: datetime | None = None) -> UserArchive:
    """The archive as bytes (module docstring)."""
    buffer = io.BytesIO()
    summary = write_user_archive(session, blobs, buffer, user_id=user_id, platform=platform,
                                 include_images=include_images, now=now)
    return UserArchive(buffer.getvalue(), archive_name(user_id, platform), summary)


def write_user_archive(session: Session, blobs: BlobStore, target: BinaryIO, *, user_id: str,
                       platform: str | None = None, include_images: bool = True,
                       now: datetime | None = None) -> ArchiveSummary:
    """Write the archive of `user_id` (on one platform, or all when None) to `target`."""
    if platform is not None:
        check_platform(platform)
    now = now or utcnow()
    captions = list(session.scalars(_mine(select(Caption), Caption, user_id, platform).order_by(Caption.id)))
    corrections = list(session.scalars(_mine(select(Correction), Correction, user_id, platform).order_by(Correction.id)))
    corrected_texts = _caption_texts(session, {c.caption_id for c in corrections})
    shas = sorted({c.image_sha256 for c in captions} | {c.image_sha256 for c in corrections})
    images = {i.sha256: i for i in session.scalars(select(Image).where(Image.sha256.in_(shas)))} if shas else {}
    with zipfile.ZipFile(target, "w") as archive:
        files = _write_images(archive, blobs, images, include_images)
        document = {
            "format": FORMAT, "exported_at": now.isoformat(),
            "user": {"id": user_id, "platform": platform},
            "opted_out": _opted_out(session, user_id, platform),
            "captions": [_caption(c, files) for c in captions],
            "corrections": [_correction(c, corrected_texts, files) for c in corrections],
            "images": [_image(images[sha], files) for sha in shas if sha in images],
        }
        archive.writestr(DATA_FILE, json.dumps(document, indent=2, ensure_ascii=False),
                         compress_type=zipfile.ZIP_DEFLATED)
        where = f" on {platform}" if platform else ""
        archive.writestr("README.txt", README.format(where=where, when=now.strftime("%Y-%m-%d %H:%M UTC")),
                         compress_type=zipfile.ZIP_DEFLATED)
    return ArchiveSummary(captions=len(captions), corrections=len(corrections), images=len(files),
                          images_gone=len(images) - len(files))


def _mine(statement, model, user_id: str, platform: str | None):  # type: ignore[no-untyped-def]
    statement = statement.where(model.user_id == user_id)
    return statement if platform is None else statement.where(model.platform == platform)


def _caption_texts(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.execute(select(Caption.id, Caption.text).where(Caption.id.in_(sorted(ids))))
    return {caption_id: text for caption_id, text in rows}


def _opted_out(session: Session, user_id: str, platform: str | None) -> list[str]:
    statement = select(UserOptOut.platform).where(UserOptOut.user_id == user_id)
    if platform is not None:
        statement = statement.where(UserOptOut.platform == platform)
    return sorted(session.scalars(statement))


def _write_images(archive: zipfile.ZipFile, blobs: BlobStore, images: dict[str, Image],
                  include: bool) -> dict[str, str]:
    """Copy each kept image file into the archive; returns sha -> its name there."""
    files: dict[str, str] = {}
    if not include:
        return files
    for sha, image in images.items():
        if not blobs.exists(sha):
            continue
        name = f"images/{sha}.{image.format or 'bin'}"
        archive.writestr(name, blobs.get(sha), compress_type=zipfile.ZIP_STORED)  # already compressed
        files[sha] = name
    return files


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _caption(c: Caption, files: dict[str, str]) -> dict[str, Any]:
    return {"id": c.id, "platform": c.platform, "workspace_id": c.workspace_id, "channel_id": c.channel_id,
            "created_at": _when(c.created_at), "text": c.text, "alternatives": list(c.alternatives or []),
            "confidence": c.confidence, "model_version": c.model_version, "image_sha256": c.image_sha256,
            "image_file": files.get(c.image_sha256)}


def _correction(c: Correction, caption_texts: dict[int, str], files: dict[str, str]) -> dict[str, Any]:
    return {"id": c.id, "kind": c.kind, "platform": c.platform, "caption_id": c.caption_id,
            "caption_text": caption_texts.get(c.caption_id), "text": c.text, "status": c.status,
            "created_at": _when(c.created_at), "status_changed_at": _when(c.status_changed_at),
            "image_sha256": c.image_sha256, "image_file": files.get(c.image_sha256)}


def _image(i: Image, files: dict[str, str]) -> dict[str, Any]:
    return {"sha256": i.sha256, "format": i.format, "width": i.width, "height": i.height,
            "size_bytes": i.size_bytes, "file": files.get(i.sha256),
            "removed_at": _when(i.blob_removed_at) if i.sha256 not in files else None}
