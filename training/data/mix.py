"""A retraining set: user feedback plus a random subset of the base dataset, written in COCO format.

The feedback fraction is the share of *images* in the mix that come from feedback: with `f` = 0.5 and 40
feedback images, 40 base images are drawn (fewer if the base set is smaller). The base keeps the model
from forgetting what the feedback does not mention. Feedback images that also appear in an evaluation
set (matched by SHA-256 of their bytes, the same content address the blob store uses) are removed first,
so a candidate is never scored on images it was trained on.

The result is an ordinary COCO-captions split (`annotations/captions_train.json` + `train/`), so the same
loader and `train` read it as they read COCO or synthetic data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

from storage.feedback import FeedbackRow
from training.data.coco import CocoCaptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MixItem:
    """One training image with its reference captions and where it came from."""

    image_path: Path
    captions: tuple[str, ...]
    source: str  # "feedback" or "base"


@dataclass(frozen=True)
class MixCounts:
    """How many images of each kind went into a mix, or were dropped from it."""

    feedback: int  # distinct feedback images (each listed `feedback_repeats` times)
    base: int  # base images drawn
    feedback_in_eval_dropped: int  # feedback images left out because an evaluation set has them


@dataclass
class Mix:
    """The mixed training items and how many of each kind went in or were dropped."""

    items: list[MixItem]
    counts: MixCounts


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def image_hashes(paths: Iterable[str | Path]) -> set[str]:
    """Content hashes of the given image files (an evaluation set's, to keep them out of training)."""
    return {file_sha256(p) for p in paths}


def base_count_for(n_feedback: int, feedback_fraction: float, available: int) -> int:
    """How many base images make feedback `feedback_fraction` of the mix, capped by what is available."""
    if not 0 < feedback_fraction <= 1:
        raise ValueError(f"feedback_fraction must be in (0, 1], got {feedback_fraction}")
    wanted = round(n_feedback * (1 - feedback_fraction) / feedback_fraction)
    return min(wanted, available)


def build_mix(
    feedback: Sequence[FeedbackRow],
    base: CocoCaptions | None,
    *,
    feedback_fraction: float,
    eval_hashes: set[str] = frozenset(),
    feedback_repeats: int = 1,
    agreement_cap: int = 1,
    seed: int = 0,
) -> Mix:
    """Feedback (minus images in `eval_hashes`) plus a seeded random base subset at `feedback_fraction`.

    `feedback_repeats` > 1 lists each feedback image that many times and draws correspondingly more base
    images: the same share of feedback per step, but more distinct base images, so less forgetting.
    An image whose caption k users agree on (`FeedbackRow.supporters`) is listed min(k, `agreement_cap`)
    times as often: agreeing users reinforce a correction, up to a cap so no image dominates.
    """
    if feedback_repeats < 1 or agreement_cap < 1:
        raise ValueError(f"feedback_repeats and agreement_cap must be at least 1, got {feedback_repeats}, "
                         f"{agreement_cap}")
    kept = [row for row in feedback if row.image_sha256 not in eval_hashes]
    items = [MixItem(row.image_path, (row.caption,), "feedback") for row in kept
             for _ in range(feedback_repeats * min(max(len(row.supporters), 1), agreement_cap))]
    base_items = list(base.items) if base is not None else []
    n_base = base_count_for(len(items), feedback_fraction, len(base_items)) if kept else 0
    feedback_share = len(items) / (len(items) + n_base) if items else 0.0
    for item in random.Random(seed).sample(base_items, n_base):
        items.append(MixItem(item.path, item.captions, "base"))
    random.Random(seed + 1).shuffle(items)
    counts = MixCounts(feedback=len(kept), base=n_base, feedback_in_eval_dropped=len(feedback) - len(kept))
    if base is not None and feedback_share > feedback_fraction + 0.01:
        log.warning("base set too small for the requested feedback fraction",
                    extra={**asdict(counts), "feedback_share": round(feedback_share, 3)})
    log.info("built retraining mix", extra=asdict(counts))
    return Mix(items, counts)


def write_coco_split(items: Sequence[MixItem], out_dir: str | Path, split: str = "train") -> Path:
    """Write `items` as a COCO-captions split under `out_dir` (images linked, or copied where links fail)."""
    root = Path(out_dir)
    images_dir = root / split
    images_dir.mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    images, annotations = [], []
    for image_id, item in enumerate(items, start=1):
        name = f"{split}_{image_id:06d}{item.image_path.suffix}"
        _link_or_copy(item.image_path, images_dir / name)
        images.append({"id": image_id, "file_name": name, "source": item.source})
        for caption in item.captions:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "caption": caption})
    captions = root / "annotations" / f"captions_{split}.json"
    payload = {"info": {"description": "capbot retraining mix"}, "images": images, "annotations": annotations}
    captions.write_text(json.dumps(payload), encoding="utf-8")
    return captions


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.symlink(Path(src).resolve(), dst)
    except OSError:  # filesystems without symlinks (some network mounts, Windows without privilege)
        shutil.copyfile(src, dst)
