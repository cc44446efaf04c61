"""Which attachments count as images, and the size cap checked from metadata alone."""

from __future__ import annotations

from types import SimpleNamespace

import discord
import pytest

from bots.discord.attachments import AttachmentRefused, check_attachment, is_image


def attachment(filename: str, content_type: str | None, size: int = 1000) -> discord.Attachment:
    data = {"id": "1", "filename": filename, "size": size, "url": "https://cdn.example/x", "proxy_url": "https://cdn.example/x"}
    if content_type is not None:
        data["content_type"] = content_type
    return discord.Attachment(data=data, state=SimpleNamespace(http=None))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("filename", "content_type", "expected"),
    [
        ("a.png", "image/png", True),
        ("a.bin", "image/jpeg", True),  # the content type wins over the name
        ("photo.JPG", None, True),  # no content type: judged by the name
        ("a.png", "text/plain", False),
        ("logo.svg", "image/svg+xml", False),
        ("notes.txt", None, False),
    ],
)
def test_is_image(filename, content_type, expected):
    assert is_image(attachment(filename, content_type)) is expected


def test_check_attachment_refuses_by_metadata():
    check_attachment(attachment("a.png", "image/png", size=100), max_bytes=100)
    with pytest.raises(AttachmentRefused) as too_big:
        check_attachment(attachment("a.png", "image/png", size=101), max_bytes=100)
    assert too_big.value.reason == "too_large" and "a.png" in too_big.value.message
    with pytest.raises(AttachmentRefused) as not_image:
        check_attachment(attachment("a.pdf", "application/pdf"), max_bytes=100)
    assert not_image.value.reason == "not_image"
