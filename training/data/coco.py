"""Load COCO-format caption datasets: real COCO 2017, capbot's synthetic sets, and the Karpathy split.

Two JSON layouts are understood:
- COCO captions (`captions_train2017.json`, synthetic `captions_<split>.json`):
  `{"images": [{"id", "file_name", ...}], "annotations": [{"image_id", "caption"}, ...]}`
- Karpathy's `dataset_coco.json`: `{"images": [{"filepath", "filename", "cocoid"|"imgid", "split",
  "sentences": [{"raw"}, ...]}]}`, where `split` is train/restval/val/test (restval counts as train).

All references are kept for evaluation; training draws one reference per image per epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from storage.errors import UserError

log = logging.getLogger(__name__)

KARPATHY_FILE = "dataset_coco.json"


class DatasetError(UserError):
    """A captions file or its images are missing or malformed."""


@dataclass(frozen=True)
class CocoItem:
    """One image and all of its reference captions."""

    image_id: int
    path: Path
    captions: tuple[str, ...]


@dataclass(frozen=True)
class CocoCaptions:
    """A loaded split: items in file order (images without captions are dropped)."""

    items: tuple[CocoItem, ...]
    annotations: Path
    images_dir: Path

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, limit: int) -> "CocoCaptions":
        """The first `limit` items (for quick evaluation)."""
        return CocoCaptions(self.items[:limit], self.annotations, self.images_dir)


@dataclass(frozen=True)
class SplitFiles:
    """Where a split's captions file and images live."""

    annotations: Path
    images_dir: Path
    split: str | None = None  # the Karpathy split name to select, when `annotations` is dataset_coco.json


def load_coco_captions(
    annotations_json: str | Path,
    images_dir: str | Path,
    *,
    split: str | None = None,
    check_images: bool = True,
) -> CocoCaptions:
    """Read a COCO or Karpathy captions file; `split` selects a Karpathy split (ignored for COCO files)."""
    path, root = Path(annotations_json), Path(images_dir)
    raw = _read_json(path)
    if not root.is_dir():
        raise DatasetError(f"image directory {root} does not exist", reason="missing_images")
    if _is_karpathy(raw):
        items = _karpathy_items(raw, root, split, path)
    else:
        items = _coco_items(raw, root, path)
    if not items:
        raise DatasetError(f"{path} has no captioned images" + (f" in split {split!r}" if split else ""), reason="empty")
    if check_images:
        _check_images(items, path)
    log.info("loaded captions", extra={"annotations": str(path), "images": len(items)})
    return CocoCaptions(tuple(items), path, root)


def load_split(dataset_dir: str | Path, split: str, *, check_images: bool = True) -> CocoCaptions:
    """`find_split` then `load_coco_captions`."""
    files = find_split(dataset_dir, split)
    return load_coco_captions(files.annotations, files.images_dir, split=files.split, check_images=check_images)


def find_split(dataset_dir: str | Path, split: str) -> SplitFiles:
    """Locate a split in a synthetic (`<split>/`), COCO 2017 (`<split>2017/`) or Karpathy layout."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DatasetError(f"dataset directory {root} does not exist", reason="missing_dataset")
    annotations = root / "annotations"
    candidates = [
        (annotations / f"captions_{split}.json", root / split),  # synthetic, or split="val2017"
        (annotations / f"captions_{split}2017.json", root / f"{split}2017"),  # COCO 2017 with split="val"
    ]
    if split.endswith("2017"):
        candidates.append((annotations / f"captions_{split}.json", root / split))
    for ann, images in candidates:
        if ann.is_file():
            return SplitFiles(ann, images)
    for karpathy in (root / KARPATHY_FILE, annotations / KARPATHY_FILE):
        if karpathy.is_file():
            return SplitFiles(karpathy, root, split)
    available = sorted(p.stem.removeprefix("captions_") for p in annotations.glob("captions_*.json"))
    raise DatasetError(
        f"no split {split!r} in {root}; available: {', '.join(available) or 'none'} "
        f"(expected annotations/captions_{split}.json or a {KARPATHY_FILE})",
        reason="missing_split",
    )


def training_pairs(dataset: CocoCaptions, epoch: int, seed: int = 0) -> list[tuple[Path, str]]:
    """One (image path, reference) per image for this epoch.

    Each image starts at a seeded offset among its references and steps one reference per epoch, so every
    reference is used once per `len(captions)` epochs, and the choice never depends on dataset order.
    """
    pairs = []
    for item in dataset.items:
        index = (_offset(seed, item.image_id) + epoch) % len(item.captions)
        pairs.append((item.path, item.captions[index]))
    return pairs


def references(dataset: CocoCaptions) -> dict[int, list[str]]:
    """All reference captions by image id, for scoring."""
    return {item.image_id: list(item.captions) for item in dataset.items}


def _offset(seed: int, image_id: int) -> int:
    digest = hashlib.sha256(f"{seed}/{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"captions file {path} does not exist", reason="missing_annotations")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}", reason="invalid_json") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("images"), list):
        raise DatasetError(f"{path} is not a COCO captions file (no 'images' list)", reason="invalid_format")
    return raw


def _is_karpathy(raw: dict) -> bool:
    return "annotations" not in raw and any("sentences" in img for img in raw["images"][:1])


def _coco_items(raw: dict, root: Path, path: Path) -> list[CocoItem]:
    if not isinstance(raw.get("annotations"), list):
        raise DatasetError(f"{path} is not a COCO captions file (no 'annotations' list)", reason="invalid_format")
    try:
        files = {int(img["id"]): img["file_name"] for img in raw["images"]}
        captions: dict[int, list[str]] = {}
        for ann in raw["annotations"]:
            image_id = int(ann["image_id"])
            if image_id not in files:
                raise DatasetError(f"{path}: annotation {ann.get('id')} refers to unknown image {image_id}", reason="invalid_format")
            captions.setdefault(image_id, []).append(_clean(ann["caption"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path} has an invalid image or annotation entry: {exc!r}", reason="invalid_format") from exc
    return [CocoItem(i, root / name, tuple(captions[i])) for i, name in files.items() if i in captions]


def _karpathy_items(raw: dict, root: Path, split: str | None, path: Path) -> list[CocoItem]:
    wanted = {"train", "restval"} if split == "train" else ({split} if split else None)
    items = []
    try:
        for img in raw["images"]:
            if wanted is not None and img["split"] not in wanted:
                continue
            image_id = int(img.get("cocoid", img.get("imgid")))
            relative = Path(img.get("filepath", "")) / img["filename"]
            texts = tuple(_clean(s["raw"]) for s in img["sentences"])
            if texts:
                items.append(CocoItem(image_id, root / relative, texts))
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path} is not a valid Karpathy split file: {exc!r}", reason="invalid_format") from exc
    return items


def _clean(caption: object) -> str:
    if not isinstance(caption, str):
        raise TypeError(f"caption {caption!r} is not a string")
    return " ".join(caption.split())  # COCO captions carry stray newlines and double spaces


def _check_images(items: list[CocoItem], path: Path) -> None:
    missing = [item.path for item in items if not item.path.is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} of {len(items)} images listed in {path} are missing, e.g. {missing[0]}",
            reason="missing_images",
        )
