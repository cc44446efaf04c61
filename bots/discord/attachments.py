"""Which attachments are images, and reading one with the size cap checked before any byte is fetched."""

from __future__ import annotations

import asyncio
from typing import Callable

import discord

from storage.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")
VECTOR_TYPES = ("image/svg+xml",)  # drawings in XML: not something the image processor can decode
DOWNLOAD_TIMEOUT_S = 60.0


class AttachmentRefused(UserError):
    """An attachment capbot will not caption (too large, not an image)."""


def is_image(attachment: discord.Attachment) -> bool:
    """True for an image attachment; falls back to the file name when Discord sent no content type."""
    if attachment.content_type:
        kind = attachment.content_type.split(";")[0].strip().lower()
        return kind.startswith("image/") and kind not in VECTOR_TYPES
    return attachment.filename.lower().endswith(IMAGE_SUFFIXES)


def check_attachment(attachment: discord.Attachment, max_bytes: int) -> None:
    """Refuse a non-image or an oversized attachment using only its metadata (nothing downloaded)."""
    if not is_image(attachment):
        raise AttachmentRefused(f"`{attachment.filename}` is not an image.", reason="not_image")
    if attachment.size > max_bytes:
        raise AttachmentRefused(
            f"`{attachment.filename}` is {attachment.size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB.",
            reason="too_large",
        )


async def read_attachment(attachment: discord.Attachment, max_bytes: int) -> bytes:
    """Download an attachment's bytes (CDN URLs expire, so callers store the bytes, never the URL)."""
    check_attachment(attachment, max_bytes)
    data = await attachment.read()
    if len(data) > max_bytes:  # the metadata lied: still refuse
        raise AttachmentRefused(f"`{attachment.filename}` is larger than the limit.", reason="too_large")
    return data


def attachment_loader(
    attachment: discord.Attachment, max_bytes: int, loop: asyncio.AbstractEventLoop
) -> Callable[[], bytes]:
    """A blocking loader for the core's worker thread that downloads on the bot's event loop.

    Handing the core a loader (not bytes) means nothing is downloaded for a channel where captioning
    is off or a user who opted out: the core decides before the job runs.
    """

    def load() -> bytes:
        future = asyncio.run_coroutine_threadsafe(read_attachment(attachment, max_bytes), loop)
        return future.result(DOWNLOAD_TIMEOUT_S)

    return load


def first_image(message: discord.Message) -> discord.Attachment | None:
    """The first image attachment of a message, if any."""
    return next((a for a in message.attachments if is_image(a)), None)
