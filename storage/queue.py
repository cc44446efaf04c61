"""The review queue: which captioned images are most worth a human look (`capbot feedback queue`, the digest).

Each captioned image gets a score from two signals, both in [0, 1]:

    score = uncertainty + disagreement

- uncertainty = (1 - confidence of the image's newest caption) / (1 + users who confirmed it), with the
  model's own 0..1 confidence stored by the bots and the web (a caption stored without one counts as 0.5:
  nothing known either way). A user saying "this caption is right" (`storage.confirmations`) is evidence the
  model's own number lacks: one confirmation halves the uncertainty, two divide it by three.
- disagreement = 1 - (largest group of identical answers) / (number of answers), where the answers are
  the newest caption and each distinct user's accepted answer about the image, a correction or a
  confirmation (answers from opted-out users left out; texts compared ignoring case, spacing and final
  punctuation). No answer: 0. One user correcting the model: 1/2. Three users agreeing on the same
  correction: 1/4 (settled). Two users each saying something else than the model and each other: 2/3. One
  user correcting it and another confirming it: 1/3.

So a confident, uncorrected caption scores near 0 and an unsure caption that users dispute scores near 2.
Ties go to the newer image. Only the newest caption of each image counts for confidence: older captions may
come from versions no longer serving.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session

from storage.blobs import BlobStore
from storage.corrections import comparable
from storage.errors import InvalidArgument
from storage.models import Caption, Correction, UserOptOut

UNKNOWN_CONFIDENCE = 0.5  # a caption stored without a confidence: neither sure nor unsure
MAX_LIMIT = 1000



@dataclass(frozen=True)
class QueueItem:
    """One image worth a look: its newest caption, what users said instead, and why it ranks where it does."""

    image_sha256: str
    image_path: Path  # where the blob store keeps the bytes
    caption_id: int  # the newest caption (what a correction should point at)
    caption: str
    model_version: str
    confidence: float | None
    corrections: tuple[str, ...]  # distinct accepted answers other than the caption (the disputes), most users first
    users: int  # distinct users with an accepted answer (correction or confirmation) about this image
    uncertainty: float
    disagreement: float
    score: float  # uncertainty + disagreement (see the module docstring)
    platform: str
    channel_id: str | None
    captioned_at: datetime | None
    url: str | None = None  # where a person can see the caption (see `caption_url`), when known
    confirmations: int = 0  # users whose answer is this caption: they said it is right


def disagreement(answers: list[str]) -> float:
    """1 - share of the largest group of identical answers (0 for one answer or none)."""
    if len(answers) < 2:
        return 0.0
    counts = Counter(comparable(a) for a in answers)
    return 1.0 - max(counts.values()) / len(answers)


def uncertainty(confidence: float | None, confirmations: int = 0) -> float:
    """(1 - confidence) / (1 + confirmations); `UNKNOWN_CONFIDENCE` stands in for a missing confidence."""
    return (1.0 - (UNKNOWN_CONFIDENCE if confidence is None else confidence)) / (1 + confirmations)


def caption_url(*, platform: str, caption_id: int, workspace_id: str | None, channel_id: str | None,
                message_ref: str | None, public_url: str | None) -> str | None:
    """A link to the caption: the Discord message (guild, channel and message known), or the caption's
    `/v1/captions/{id}` under `public_url` for web captions; None when there is none to give."""
    if platform == "discord" and workspace_id and channel_id and message_ref:
        return f"https://discord.com/channels/{workspace_id}/{channel_id}/{message_ref}"
    if platform in ("web", "cli") and public_url:
        return f"{public_url.rstrip('/')}/v1/captions/{caption_id}"
    return None


def review_queue(session: Session, blobs: BlobStore, *, limit: int = 20, since: datetime | None = None,
                 public_url: str | None = None) -> list[QueueItem]:
    """The `limit` captioned images with the highest score (module docstring), highest first.

    `since`: only images captioned or corrected after that time. Images whose blob is gone are left out.
    Raises `InvalidArgument` (reason "bad_limit") for a limit outside 1..MAX_LIMIT.
    """
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit must be between 1 and {MAX_LIMIT}, got {limit!r}", reason="bad_limit")
    newest = _newest_captions(session, since)
    answers = _corrections_by_image(session, [c.image_sha256 for c in newest])
    items = [_item(c, answers.get(c.image_sha256, []), blobs, public_url)
             for c in newest if blobs.exists(c.image_sha256)]
    items.sort(key=lambda i: (i.score, i.captioned_at or datetime.min, i.caption_id), reverse=True)
    return items[:limit]


def _newest_captions(session: Session, since: datetime | None) -> list[Caption]:
    ranked = select(
        Caption.id,
        func.row_number().over(partition_by=Caption.image_sha256, order_by=Caption.id.desc()).label("rank"),
    ).subquery()
    statement = select(Caption).join(ranked, ranked.c.id == Caption.id).where(ranked.c.rank == 1)
    if since is not None:
        corrected_since = exists().where(and_(Correction.image_sha256 == Caption.image_sha256,
                                              Correction.created_at > since))
        statement = statement.where(or_(Caption.created_at > since, corrected_since))
    return list(session.scalars(statement))


def _corrections_by_image(session: Session, hashes: list[str]) -> dict[str, list[Correction]]:
    opted_out = exists().where(and_(UserOptOut.platform == Correction.platform,
                                    UserOptOut.user_id == Correction.user_id))
    found: dict[str, list[Correction]] = {}
    for start in range(0, len(hashes), 500):  # keep the IN list within every backend's parameter limit
        rows = session.scalars(
            select(Correction)
            .where(Correction.image_sha256.in_(hashes[start:start + 500]), Correction.status == "accepted",
                   ~opted_out)
            .order_by(Correction.id)
        )
        for row in rows:
            found.setdefault(row.image_sha256, []).append(row)
    return found


def _item(caption: Caption, corrections: list[Correction], blobs: BlobStore, public_url: str | None) -> QueueItem:
    # One answer per user: record_correction keeps at most one accepted correction per user and image on a
    # platform, and the newest one stands when the same user id shows up on two platforms.
    per_user = {(c.platform, c.user_id): c.text for c in corrections}
    texts = list(per_user.values())
    said = comparable(caption.text)
    confirmed = sum(1 for text in texts if comparable(text) == said)
    by_votes = Counter(comparable(t) for t in texts if comparable(t) != said)
    first_spelling = {}
    for text in texts:
        first_spelling.setdefault(comparable(text), text)
    distinct = tuple(first_spelling[key] for key, _ in by_votes.most_common())
    unsure, disputed = uncertainty(caption.confidence, confirmed), disagreement([caption.text, *texts])
    return QueueItem(
        image_sha256=caption.image_sha256,
        image_path=blobs.path(caption.image_sha256),
        caption_id=caption.id,
        caption=caption.text,
        model_version=caption.model_version,
        confidence=caption.confidence,
        corrections=distinct,
        users=len(per_user),
        uncertainty=unsure,
        disagreement=disputed,
        score=unsure + disputed,
        platform=caption.platform,
        channel_id=caption.channel_id,
        captioned_at=caption.created_at,
        url=caption_url(platform=caption.platform, caption_id=caption.id, workspace_id=caption.workspace_id,
                        channel_id=caption.channel_id, message_ref=caption.message_ref, public_url=public_url),
        confirmations=confirmed,
    )
