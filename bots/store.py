"""`BotStore` over the storage layer: one short unit of work per call, image bytes in the blob store."""

from __future__ import annotations

import io
import logging
from dataclasses import asdict

from PIL import Image
from sqlalchemy import Engine

from bots.core import CaptionInfo, CorrectionOutcome, ForgetCounts, Origin
from inference.types import Caption, GenerationOptions
from storage import captions, channels, confirmations, corrections, events, forget, images
from storage.blobs import BlobStore
from storage.db import session_scope
from storage.errors import CorrectionRefused

log = logging.getLogger(__name__)


class SqlBotStore:
    """Implements `bots.core.BotStore` with `storage/` functions; thread-safe (a session per call)."""

    def __init__(self, engine: Engine, blobs: BlobStore, *, auto_caption_default: bool = True) -> None:
        self.engine = engine
        self.blobs = blobs
        self.auto_caption_default = auto_caption_default  # channels never switched on or off

    def mark_event_processed(self, platform: str, event_id: str) -> bool:
        """Claim the event in its own committed transaction, so a concurrent retry sees the claim at once."""
        with session_scope(self.engine) as session:
            return events.mark_event_processed(session, platform, event_id)

    def auto_caption_enabled(self, origin: Origin) -> bool:
        with session_scope(self.engine) as session:
            return channels.auto_caption_enabled(
                session, platform=origin.platform, channel_id=origin.channel, default=self.auto_caption_default
            )

    def set_auto_caption(self, origin: Origin, enabled: bool) -> None:
        with session_scope(self.engine) as session:
            channels.set_auto_caption(
                session, platform=origin.platform, channel_id=origin.channel, enabled=enabled,
                workspace_id=origin.workspace,
            )

    def is_opted_out(self, platform: str, user: str) -> bool:
        with session_scope(self.engine) as session:
            return channels.is_user_opted_out(session, platform=platform, user_id=user)

    def set_opt_out(self, platform: str, user: str, opted_out: bool) -> None:
        with session_scope(self.engine) as session:
            channels.set_user_opt_out(session, platform=platform, user_id=user, opted_out=opted_out)

    def record_caption(
        self, origin: Origin, image: bytes, caption: Caption, options: GenerationOptions, latency_ms: float
    ) -> int:
        """Store the image (blob + row) and its caption; returns the caption id."""
        fmt, width, height = _describe(image)
        with session_scope(self.engine) as session:
            stored = images.store_image(
                session, self.blobs, image, format=fmt, width=width, height=height,
                platform=origin.platform, workspace_id=origin.workspace, channel_id=origin.channel,
            )
            record = captions.record_caption(
                session, image_sha256=stored.sha256, text=caption.text, model_version=caption.model_version,
                platform=origin.platform, options=asdict(options), latency_ms=latency_ms,
                confidence=caption.confidence, alternatives=caption.alternatives,
                workspace_id=origin.workspace, channel_id=origin.channel, user_id=origin.user,
                message_ref=origin.message_ref,
            )
            return record.id

    def caption_text(self, caption_id: int) -> str | None:
        with session_scope(self.engine) as session:
            record = captions.get_caption(session, caption_id)
            return None if record is None else record.text

    def caption_info(self, caption_id: int) -> CaptionInfo | None:
        with session_scope(self.engine) as session:
            record = captions.get_caption(session, caption_id)
        if record is None:
            return None
        return CaptionInfo(
            id=record.id, text=record.text, model_version=record.model_version, platform=record.platform,
            user=record.user_id, confidence=record.confidence, alternatives=record.alternatives,
            created_at=record.created_at,
        )

    def add_correction(self, caption_id: int, origin: Origin, text: str) -> CorrectionOutcome:
        try:
            with session_scope(self.engine) as session:
                record = corrections.record_correction(
                    session, caption_id=caption_id, user_id=origin.user, text=text, platform=origin.platform
                )
        except CorrectionRefused as exc:
            return CorrectionOutcome(accepted=False, message=exc.message, reason=exc.reason)
        return CorrectionOutcome(accepted=True, correction_id=record.id)

    def add_confirmation(self, caption_id: int, origin: Origin) -> CorrectionOutcome:
        try:
            with session_scope(self.engine) as session:
                record = confirmations.record_confirmation(session, caption_id=caption_id, user_id=origin.user,
                                                           platform=origin.platform)
        except CorrectionRefused as exc:
            return CorrectionOutcome(accepted=False, message=exc.message, reason=exc.reason)
        return CorrectionOutcome(accepted=True, correction_id=record.id)

    def forget_user(self, platform: str, user: str) -> ForgetCounts:
        """Delete the user's rows on this platform; their blobs go once no one else references them."""
        with session_scope(self.engine) as session:
            result = forget.forget_user(session, self.blobs, platform=platform, user_id=user)
        counts = {k: v for k, v in vars(result).items() if isinstance(v, int)}
        return ForgetCounts(
            captions=counts.pop("captions", 0), corrections=counts.pop("corrections", 0),
            images=counts.pop("images", 0), extra=counts,
        )


def _describe(data: bytes) -> tuple[str, int, int]:
    """Format name and size from the image header (the captioner has already decoded the bytes)."""
    with Image.open(io.BytesIO(data)) as img:
        return (img.format or "unknown").lower(), img.width, img.height
