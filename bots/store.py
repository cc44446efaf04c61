"""`BotStore` over the storage layer: one short unit of work per call, image bytes in the blob store.

Where a community keeps no images (retention 0), a caption's image is recorded without its file and its bytes
wait in an `ImageHold`; a correction or confirmation writes them to the blob store. A correction whose
image's file is gone (past retention, or no longer held) is refused: it could never train anything.
"""

from __future__ import annotations

import io
import logging
from dataclasses import asdict

from PIL import Image
from sqlalchemy import Engine

from sqlalchemy import select
from sqlalchemy.orm import Session

from bots.core import CaptionInfo, CommunityView, CorrectionOutcome, DataExport, ForgetCounts, Origin
from bots.image_hold import ImageHold
from inference.types import Caption, GenerationOptions
from storage import captions, channels, communities, confirmations, corrections, events, forget, images, userdata
from storage._sql import is_row_id
from storage.blobs import BlobStore, sha256_of
from storage.db import session_scope
from storage.errors import CorrectionRefused
from storage.models import Caption as CaptionRow
from storage.models import Image as ImageRow

IMAGE_GONE = ("I no longer keep that image (this community keeps uncorrected images only for a while), so a "
              "correction of it could not train anything.")

log = logging.getLogger(__name__)


class SqlBotStore:
    """Implements `bots.core.BotStore` with `storage/` functions; thread-safe (a session per call)."""

    def __init__(self, engine: Engine, blobs: BlobStore, *, auto_caption_default: bool = True,
                 training_consent_default: bool = True, image_retention_days: int | None = None,
                 hold: ImageHold | None = None) -> None:
        self.engine = engine
        self.blobs = blobs
        self.auto_caption_default = auto_caption_default  # channels never switched on or off
        self.training_consent_default = training_consent_default  # communities that never chose
        self.image_retention_days = image_retention_days  # the operator's (None: no limit; 0: keep none)
        self.hold = hold if hold is not None else ImageHold(ttl_s=3600)  # images where none are kept, until corrected
        self._noticed: set[tuple[str, str]] = set()  # channels known to have had their notice: no write per caption

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
        """Store the image (blob + row; only the row, its bytes held in memory, where the community keeps no
        images) and its caption; returns the caption id."""
        fmt, width, height = _describe(image)
        where = {"platform": origin.platform, "workspace_id": origin.workspace, "channel_id": origin.channel}
        with session_scope(self.engine) as session:
            if self._keeps_images(session, origin):
                stored = images.store_image(session, self.blobs, image, format=fmt, width=width, height=height, **where)
            else:
                stored = images.record_image_without_blob(session, self.blobs, sha256=sha256_of(image),
                                                          size_bytes=len(image), format=fmt, width=width,
                                                          height=height, **where)
                self.hold.put(stored.sha256, image)
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
                sha = self._lock_image_of(session, caption_id)
                record = corrections.record_correction(
                    session, caption_id=caption_id, user_id=origin.user, text=text, platform=origin.platform
                )
                self._keep_file(session, sha)
        except CorrectionRefused as exc:
            return CorrectionOutcome(accepted=False, message=exc.message, reason=exc.reason)
        return CorrectionOutcome(accepted=True, correction_id=record.id)

    def add_confirmation(self, caption_id: int, origin: Origin) -> CorrectionOutcome:
        try:
            with session_scope(self.engine) as session:
                sha = self._lock_image_of(session, caption_id)
                record = confirmations.record_confirmation(session, caption_id=caption_id, user_id=origin.user,
                                                           platform=origin.platform)
                self._keep_file(session, sha)
        except CorrectionRefused as exc:
            return CorrectionOutcome(accepted=False, message=exc.message, reason=exc.reason)
        return CorrectionOutcome(accepted=True, correction_id=record.id)

    def _lock_image_of(self, session: Session, caption_id: int) -> str | None:
        """Lock the caption's image row (the retention sweep takes the same lock); None for an unknown caption
        (recording the correction refuses it)."""
        if not is_row_id(caption_id):
            return None
        sha = session.scalar(select(CaptionRow.image_sha256).where(CaptionRow.id == caption_id))
        if sha is not None:
            session.scalars(select(ImageRow.sha256).where(ImageRow.sha256 == sha).with_for_update()).first()
        return sha

    def _keep_file(self, session: Session, sha: str | None) -> None:
        """Make sure the corrected image's file is in the blob store (from the hold if need be), or refuse."""
        if sha is None:
            return
        row = session.get(ImageRow, sha)
        # The row is the truth: on Modal a container's view of the blobs Volume may predate the sweep's commit.
        if row is not None and row.blob_removed_at is None and self.blobs.exists(sha):
            return
        held = self.hold.get(sha)
        if held is None:
            raise CorrectionRefused(IMAGE_GONE, reason="image_gone")
        images.restore_blob(session, self.blobs, sha, held)

    def forget_user(self, platform: str, user: str) -> ForgetCounts:
        """Delete the user's rows on this platform; their blobs go once no one else references them (and the
        bytes held in memory of their captions at once)."""
        with session_scope(self.engine) as session:
            theirs = set(session.scalars(select(CaptionRow.image_sha256).where(
                CaptionRow.platform == platform, CaptionRow.user_id == user)))
            result = forget.forget_user(session, self.blobs, platform=platform, user_id=user)
        self.hold.discard(theirs)
        counts = {k: v for k, v in vars(result).items() if isinstance(v, int)}
        return ForgetCounts(
            captions=counts.pop("captions", 0), corrections=counts.pop("corrections", 0),
            images=counts.pop("images", 0), extra=counts,
        )


    # --- privacy and community settings ---

    def community(self, origin: Origin) -> CommunityView:
        """The choices in effect where `origin` is (the defaults outside a workspace or server)."""
        with session_scope(self.engine) as session:
            if origin.workspace:
                chosen = communities.get_choices(session, platform=origin.platform, workspace_id=origin.workspace)
                switched = channels.channel_switches(session, platform=origin.platform, workspace_id=origin.workspace)
            else:
                chosen, switched = communities.CommunityChoices(origin.platform, ""), []
        consent = self.training_consent_default if chosen.training_consent is None else chosen.training_consent
        return CommunityView(
            platform=origin.platform, workspace=origin.workspace, training_consent=consent,
            consent_chosen=chosen.training_consent is not None,
            retention_days=communities.effective_retention(self.image_retention_days, chosen.image_retention_days),
            community_retention_days=chosen.image_retention_days, operator_retention_days=self.image_retention_days,
            auto_caption_default=self.auto_caption_default, channels=tuple(switched),
        )

    def set_training_consent(self, origin: Origin, consent: bool | None) -> None:
        with session_scope(self.engine) as session:
            communities.set_training_consent(session, platform=origin.platform, workspace_id=origin.workspace or "",
                                             consent=consent, by=origin.user)

    def set_image_retention(self, origin: Origin, days: int | None) -> None:
        with session_scope(self.engine) as session:
            communities.set_image_retention(session, platform=origin.platform, workspace_id=origin.workspace or "",
                                            days=days, by=origin.user)

    def claim_privacy_notice(self, origin: Origin) -> bool:
        key = (origin.platform, origin.channel)
        if key in self._noticed:
            return False
        with session_scope(self.engine) as session:
            claimed = channels.claim_privacy_notice(session, platform=origin.platform, channel_id=origin.channel)
        self._noticed.add(key)
        return claimed

    def user_data(self, platform: str, user: str, *, include_images: bool = True) -> DataExport:
        with session_scope(self.engine) as session:
            archive = userdata.user_archive(session, self.blobs, user_id=user, platform=platform,
                                            include_images=include_images)
        s = archive.summary
        return DataExport(filename=archive.filename, data=archive.data, captions=s.captions,
                          corrections=s.corrections, images=s.images, images_gone=s.images_gone)

    def _keeps_images(self, session: Session, origin: Origin) -> bool:
        chosen = None
        if origin.workspace:
            chosen = communities.get_choices(session, platform=origin.platform,
                                             workspace_id=origin.workspace).image_retention_days
        return communities.effective_retention(self.image_retention_days, chosen) != 0


def _describe(data: bytes) -> tuple[str, int, int]:
    """Format name and size from the image header (the captioner has already decoded the bytes)."""
    with Image.open(io.BytesIO(data)) as img:
        return (img.format or "unknown").lower(), img.width, img.height
