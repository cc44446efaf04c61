"""Screening feedback before training: junk set aside, then several users' corrections resolved by consensus.

The one path from accepted corrections (`storage.feedback.export_corrections`, one per user and image) to
training rows, used by retraining and by `capbot feedback export`. In order:
1. copy-paste spam: a text (its content words, as consensus compares them) written on at least
   `spam_min_images` images that have nothing to do with it, and on most of the images it was written on,
   is set aside everywhere it appears. "Nothing to do with it": the image's model caption shares no content
   word with the text, and those images are unrelated to each other too (no content word appears in more
   than `spam_max_common_share` of their model captions). So many users writing "a red ball" on red
   circles (the model said "red") or "a ball" on circles of every colour (the model said "circle" on
   nearly all of them) are kept, while "lol nice pic" pasted on thirty unrelated images is not. Images
   whose model captions all share one word (a domain where every caption says "background") look related,
   so spam on them goes undetected: a miss, never a false alarm, and the other rules still apply;
2. per-user cap: one user (platform + user id; on the web one API key or one client address) contributes
   at most `max_images_per_user` corrected images to one run, their earliest; the rest is set aside;
3. consensus (`training.data.consensus`): one caption per image, minorities outvoted, ties disputed.
How many corrections each rule set aside is counted in `ScreenCounts` (retraining stores them on the run).
Whether what is left is enough to train on (distinct users, new images) is the run's decision
(`training.retrain`).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from storage.feedback import FeedbackRow
from training.data.consensus import content_key, resolve_consensus
from training.data.renames import FUNCTION_WORDS, words

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScreenRules:
    """Thresholds of the junk rules (see the module docstring)."""

    max_images_per_user: int = 25  # CAPBOT_RETRAIN_MAX_IMAGES_PER_USER
    spam_min_images: int = 5  # CAPBOT_RETRAIN_SPAM_MIN_IMAGES
    spam_max_common_share: float = 0.6  # images are related when one content word is in more of their captions

    def __post_init__(self) -> None:
        if self.max_images_per_user < 1 or self.spam_min_images < 2:
            raise ValueError("max_images_per_user must be at least 1 and spam_min_images at least 2")


@dataclass(frozen=True)
class ScreenCounts:
    """What screening did, in corrections (one per user and image) unless it says images."""

    corrections: int = 0  # accepted corrections screened
    spam: int = 0  # set aside as copy-paste spam
    over_user_cap: int = 0  # set aside: beyond their user's `max_images_per_user`
    outvoted: int = 0  # conflicting with their image's majority
    disputed_images: int = 0  # images with no majority (none of their corrections is used)
    images: int = 0  # images kept, one caption each
    users: int = 0  # distinct users supporting the kept images

    def to_dict(self) -> dict:
        """JSON-ready form (run records, logs)."""
        return asdict(self)


@dataclass(frozen=True)
class ScreenedFeedback:
    """Training rows (one per image, `supporters` filled in) and what screening set aside."""

    rows: list[FeedbackRow]
    counts: ScreenCounts
    spam_texts: int = 0  # distinct texts judged copy-paste spam


def screen_feedback(corrections: Sequence[FeedbackRow], rules: ScreenRules = ScreenRules()) -> ScreenedFeedback:
    """Set aside spam and corrections over the per-user cap, then resolve each image by consensus."""
    spam = find_spam(corrections, rules)
    not_spam = [row for row in corrections if content_key(row.caption) not in spam]
    capped, over_cap = cap_per_user(not_spam, rules.max_images_per_user)
    consensus = resolve_consensus(capped)
    users = {user for row in consensus.rows for user in row.supporters}
    counts = ScreenCounts(corrections=len(corrections), spam=len(corrections) - len(not_spam),
                          over_user_cap=len(over_cap), outvoted=consensus.outvoted,
                          disputed_images=len(consensus.disputed), images=len(consensus.rows), users=len(users))
    log.info("feedback screened", extra={**counts.to_dict(), "spam_texts": len(spam)})
    return ScreenedFeedback(consensus.rows, counts, spam_texts=len(spam))


def find_spam(corrections: Iterable[FeedbackRow], rules: ScreenRules = ScreenRules()) -> set[frozenset[str]]:
    """The content keys (`training.data.consensus.content_key`) of texts pasted on unrelated images."""
    said_on: dict[frozenset[str], dict[str, frozenset[str]]] = defaultdict(dict)  # text -> image -> model words
    for row in corrections:
        said_on[content_key(row.caption)][row.image_sha256] = _content_words(row.model_caption)
    spam = set()
    for key, images in said_on.items():
        known = [said for said in images.values() if said]  # no model caption: nothing to compare with
        unrelated = [said for said in known if not said & key]
        if (len(unrelated) >= rules.spam_min_images and 2 * len(unrelated) > len(known)
                and not _related(unrelated, rules.spam_max_common_share)):
            spam.add(key)
    return spam


def cap_per_user(corrections: Sequence[FeedbackRow], max_images: int) -> tuple[list[FeedbackRow], list[FeedbackRow]]:
    """(kept, set aside): each user's earliest `max_images` corrections are kept, in the input's order."""
    order = sorted(range(len(corrections)), key=lambda i: (corrections[i].order, i))
    taken: Counter = Counter()
    keep = set()
    for i in order:
        user = corrections[i].user
        if taken[user] < max_images:
            taken[user] += 1
            keep.add(i)
    kept = [row for i, row in enumerate(corrections) if i in keep]
    return kept, [row for i, row in enumerate(corrections) if i not in keep]


def _content_words(text: str) -> frozenset[str]:
    return frozenset(words(text)) - FUNCTION_WORDS


def _related(captions: list[frozenset[str]], max_share: float) -> bool:
    counts = Counter(word for said in captions for word in said)
    return bool(counts) and max(counts.values()) > max_share * len(captions)

