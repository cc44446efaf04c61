"""Small builders for storage tests: real rows through the public functions."""

from __future__ import annotations

from storage import captions, images
from storage.captions import CaptionRecord


def make_caption(session, blobs, *, data: bytes = b"image-bytes", text: str = "a dog on a beach",
                 user_id: str = "U1", platform: str = "slack", **kwargs) -> CaptionRecord:
    """Store an image and one caption of it."""
    image = images.store_image(session, blobs, data, format="png", width=4, height=3, platform=platform)
    return captions.record_caption(session, image_sha256=image.sha256, text=text, model_version="base",
                                   platform=platform, user_id=user_id, **kwargs)
