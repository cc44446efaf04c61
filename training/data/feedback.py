"""User feedback as training data: the storage layer's rows split into train / held-out, or as a `datasets.Dataset`.

The storage layer exports accepted corrections (latest per image, opted-out users excluded) as
`storage.feedback.FeedbackRow`s. Here they are split into train / held-out by a stable hash of the
image's content (an image held out once stays held out in every later run, so the held-out feedback
score never measures memorised training data), and can be saved as a Hugging Face dataset.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from storage.feedback import FeedbackRow


def _bucket(image_sha256: str) -> float:
    digest = hashlib.sha256(f"heldout/{image_sha256}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def is_held_out(image_sha256: str, fraction: float) -> bool:
    """Whether this image belongs to the held-out feedback: a stable function of its hash alone."""
    return _bucket(image_sha256) < fraction


def split_feedback(
    rows: Sequence[FeedbackRow], held_out_fraction: float, *, min_held_out: int = 0
) -> tuple[list[FeedbackRow], list[FeedbackRow]]:
    """(train, held_out): each image's side depends only on its content hash, never on the batch.

    When fewer than `min_held_out` images fall below the fraction, the images with the next-lowest hash
    buckets are held out too (still independent of order), as long as as many remain for training.
    """
    ranked = sorted(rows, key=lambda r: _bucket(r.image_sha256))
    n_held = sum(1 for r in ranked if is_held_out(r.image_sha256, held_out_fraction))
    if n_held < min_held_out:
        n_held = min(min_held_out, len(ranked) // 2)
    held = {id(r) for r in ranked[:n_held]}
    train = [r for r in rows if id(r) not in held]
    held_out = [r for r in rows if id(r) in held]
    return train, held_out


def to_dataset(rows: Sequence[FeedbackRow]):
    """The rows as a `datasets.Dataset`: `image` (decoded lazily), `caption`, `model_caption`, `image_sha256`,
    `created_at` (ISO 8601, empty when unknown)."""
    from datasets import Dataset, Features, Image, Value

    features = Features(
        {"image": Image(), "caption": Value("string"), "model_caption": Value("string"), "image_sha256": Value("string"), "created_at": Value("string")}
    )
    return Dataset.from_dict(
        {
            "image": [str(r.image_path) for r in rows],
            "caption": [r.caption for r in rows],
            "model_caption": [r.model_caption for r in rows],
            "image_sha256": [r.image_sha256 for r in rows],
            "created_at": [r.created_at.isoformat() if r.created_at else "" for r in rows],
        },
        features=features,
    )
