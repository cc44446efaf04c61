"""RedCaps: read the official annotations, download images, split, subset, and save for training.

Steps of `build_redcaps` (each a helper below):
1. Records come from the official per-subreddit JSON files (`load_annotation_files`) or a hub dataset repo
   (`load_hub_records`), de-duplicated by image id.
2. `split_records` shuffles them with a seed and cuts train/val/test by ratio, before any download, so a
   record's split never depends on which other images happened to download.
3. For each split, images are fetched in split order, in rounds, until the subset count is reached or the
   split runs out; failures are counted by kind, never retried forever.
4. The subset is saved as a `datasets.DatasetDict` (`save_to_disk`, columns below) and as COCO-format
   captions, one file per split, which `training.data.coco.load_split(out_dir, split)` reads.

Layout under `out_dir`:

    train/<image_id>.jpg, val/..., test/...   images (file names relative to the split directory)
    annotations/captions_{train,val,test}.json
    dataset/                                   DatasetDict.save_to_disk (image_path relative to out_dir)
    report.json                                counts, failures by kind, shortfalls
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from storage.errors import UserError
from training.data.image_fetch import (
    IMAGE_EXTENSIONS,
    FetchedImage,
    FetchOptions,
    FetchReport,
    ImageJob,
    fetch_images,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
DEFAULT_RATIOS = (0.7, 0.1, 0.2)
DEFAULT_COUNTS = (3500, 500, 1000)
DATASET_DIR = "dataset"
_ROUND_SLACK = 1.25  # fetch this many candidates per missing image in a round, since some URLs fail
_FIELDS = ("image_id", "url", "caption", "raw_caption", "subreddit", "author", "score", "created_utc", "permalink")


class RedcapsError(UserError):
    """Bad RedCaps input or settings (reason: bad_annotations, bad_ratios, bad_counts, hub_unavailable,
    no_images, missing_dataset)."""


@dataclass(frozen=True)
class RedcapsRecord:
    """One RedCaps annotation (one image and its caption)."""

    image_id: str
    url: str
    caption: str
    raw_caption: str = ""
    subreddit: str = ""
    author: str = ""
    score: int = 0
    created_utc: float = 0.0
    permalink: str = ""


@dataclass
class RedcapsBuild:
    """What `build_redcaps` produced."""

    out_dir: Path
    dataset_dir: Path
    captions_files: dict[str, Path]
    counts: dict[str, int]  # images saved per split
    wanted: dict[str, int | None]  # the subset count asked for per split (None = all)
    failures: dict[str, int] = field(default_factory=dict)  # failed downloads by kind
    attempted: int = 0  # images requested or found on disk

    @property
    def shortfall(self) -> dict[str, int]:
        """Splits that ended with fewer images than asked for, and by how many."""
        return {s: w - self.counts[s] for s, w in self.wanted.items() if w is not None and self.counts[s] < w}


# --- 1. records ---------------------------------------------------------------------------------------------

def load_annotation_files(paths: Iterable[str | Path]) -> list[RedcapsRecord]:
    """Read official RedCaps annotation files (or directories of them); duplicates by image id dropped."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(path.glob("*.json")))
        elif path.is_file():
            files.append(path)
        else:
            raise RedcapsError(f"annotation file or directory {path} does not exist", reason="bad_annotations")
    if not files:
        raise RedcapsError("no RedCaps annotation files (*.json) found", reason="bad_annotations")
    records = [record for path in files for record in _read_annotation_file(path)]
    return _dedupe(records)


def _read_annotation_file(path: Path) -> list[RedcapsRecord]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [_record(row) for row in data["annotations"]]
    except (ValueError, UnicodeDecodeError) as exc:
        raise RedcapsError(f"{path} is not valid JSON: {exc}", reason="bad_annotations") from None
    except (KeyError, TypeError) as exc:
        raise RedcapsError(
            f"{path} is not a RedCaps annotation file (expected {{'annotations': [{{'image_id', 'url', "
            f"'caption', ...}}]}}; missing {exc})",
            reason="bad_annotations",
        ) from None


def _record(row: Mapping) -> RedcapsRecord:
    url = row.get("url") or row["image_url"]  # the hub copy names the column image_url
    return RedcapsRecord(
        image_id=str(row["image_id"]), url=str(url), caption=str(row["caption"]),
        raw_caption=str(row.get("raw_caption") or ""), subreddit=str(row.get("subreddit") or ""),
        author=str(row.get("author") or ""), score=int(row.get("score") or 0),
        created_utc=float(row.get("created_utc") or 0), permalink=str(row.get("permalink") or ""),
    )


def _dedupe(records: Iterable[RedcapsRecord]) -> list[RedcapsRecord]:
    seen: dict[str, RedcapsRecord] = {}
    for record in records:
        seen.setdefault(record.image_id, record)  # crossposts repeat an image under several subreddits
    return list(seen.values())


def load_hub_records(name: str, *, split: str = "train", **load_kwargs: object) -> list[RedcapsRecord]:
    """Records from a dataset repo on the Hugging Face Hub (or a local dataset folder) with RedCaps columns.

    Fails with `RedcapsError(reason="hub_unavailable")` when the hub cannot be reached or the repo is missing.
    """
    table = _load_from_hub(name, split=split, **load_kwargs)
    try:
        return _dedupe(_record(row) for row in table)
    except (KeyError, TypeError, ValueError) as exc:
        raise RedcapsError(f"dataset {name!r} has no RedCaps columns (missing {exc})", reason="bad_annotations") from None


def _load_from_hub(name: str, **load_kwargs: object):
    """`datasets.load_dataset(name)`, with the ways it fails offline turned into one clear message."""
    import datasets

    try:
        return datasets.load_dataset(name, **load_kwargs)
    # RuntimeError: datasets refuses repos that need a loading script (as the original RedCaps repo does).
    except (ConnectionError, OSError, datasets.exceptions.DatasetsError, ValueError, RuntimeError) as exc:
        where = f" (split {load_kwargs['split']!r})" if "split" in load_kwargs else ""
        raise RedcapsError(
            f"could not load dataset {name!r}{where} from the Hugging Face Hub: {exc}. "
            "Check the name and your connection, or use local files",
            reason="hub_unavailable",
        ) from None


# --- 2. split -----------------------------------------------------------------------------------------------

def split_records(
    records: Sequence[RedcapsRecord], ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = 0
) -> dict[str, list[RedcapsRecord]]:
    """Shuffle with `seed` and cut into train/val/test by `ratios`; the same inputs give the same splits."""
    ratios = check_ratios(ratios)
    ordered = sorted(records, key=lambda r: r.image_id)  # input file order must not matter
    random.Random(seed).shuffle(ordered)
    n_train = math.floor(len(ordered) * ratios[0])
    n_val = math.floor(len(ordered) * ratios[1])
    return {"train": ordered[:n_train], "val": ordered[n_train:n_train + n_val], "test": ordered[n_train + n_val:]}


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Validate train/val/test ratios: three non-negative numbers summing to 1."""
    values = tuple(float(r) for r in ratios)
    if len(values) != 3 or any(r < 0 for r in values) or abs(sum(values) - 1) > 1e-6:
        raise RedcapsError(f"ratios must be three non-negative numbers summing to 1 (train,val,test), got {ratios}",
                           reason="bad_ratios")
    return values  # type: ignore[return-value]


# --- 3. download --------------------------------------------------------------------------------------------

@dataclass
class _SplitDownload:
    images: list[tuple[RedcapsRecord, FetchedImage]] = field(default_factory=list)
    report: FetchReport = field(default_factory=FetchReport)


def download_split(
    records: Sequence[RedcapsRecord],
    image_dir: Path,
    wanted: int | None,
    *,
    fetch: Callable[[list[ImageJob]], FetchReport],
) -> _SplitDownload:
    """Fetch images for `records` in order, in rounds, until `wanted` succeed (None = all) or records run out."""
    result = _SplitDownload()
    position = 0
    while position < len(records) and (wanted is None or len(result.images) < wanted):
        missing = len(records) if wanted is None else wanted - len(result.images)
        batch = records[position:position + math.ceil(missing * _ROUND_SLACK) + 2]
        position += len(batch)
        jobs = [ImageJob(r.image_id, r.url, image_dir / _safe_name(r.image_id)) for r in batch]
        for job in jobs:
            _adopt_from_other_split(job.dest_stem)
        report = fetch(jobs)
        by_key = {record.image_id: record for record in batch}
        result.images.extend((by_key[image.key], image) for image in report.images)
        result.report.images.extend(report.images)
        result.report.failures.extend(report.failures)
    if wanted is not None:
        result.images = result.images[:wanted]  # rounds keep split order, so the first `wanted` are stable
    return result


def _adopt_from_other_split(dest_stem: Path) -> None:
    """Move an image saved under another split (an earlier run with other seed or ratios) to `dest_stem`."""
    for split in SPLITS:
        other = dest_stem.parent.parent / split / dest_stem.name
        if other.parent == dest_stem.parent:
            continue
        for ext in IMAGE_EXTENSIONS:
            found = other.with_name(other.name + ext)
            if found.is_file():
                dest_stem.parent.mkdir(parents=True, exist_ok=True)
                os.replace(found, dest_stem.with_name(dest_stem.name + ext))
                return


def _safe_name(image_id: str) -> str:
    cleaned = "".join(c for c in image_id if c.isalnum() or c in "-_")
    return cleaned if cleaned == image_id and cleaned else hashlib.sha1(image_id.encode()).hexdigest()[:16]


# --- 4. save ------------------------------------------------------------------------------------------------

def coco_image_id(image_id: str) -> int:
    """A stable integer id for COCO files: RedCaps ids are base-36 Reddit post ids, others are hashed."""
    try:
        return int(image_id, 36)
    except ValueError:
        return int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:6], "big")


def write_coco_captions(rows: Sequence[tuple[RedcapsRecord, FetchedImage]], image_dir: Path, path: Path) -> Path:
    """Write COCO-format captions for one split; `file_name` is relative to `image_dir`."""
    images, annotations = [], []
    for index, (record, image) in enumerate(rows, start=1):
        image_id = coco_image_id(record.image_id)
        images.append({"id": image_id, "file_name": image.path.relative_to(image_dir).as_posix(),
                       "width": image.width, "height": image.height, "redcaps_id": record.image_id,
                       "subreddit": record.subreddit, "url": record.url})
        annotations.append({"id": index, "image_id": image_id, "caption": record.caption})
    payload = {"info": {"description": "RedCaps subset built by capbot"}, "licenses": [],
               "images": images, "annotations": annotations}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def save_dataset(splits: Mapping[str, Sequence[tuple[RedcapsRecord, FetchedImage]]], out_dir: Path):
    """Save the splits as a `datasets.DatasetDict` under `out_dir/dataset` and return it.

    Columns: image_path (relative to `out_dir`), caption, and the RedCaps annotation fields.
    """
    import datasets

    features = datasets.Features({
        "image_path": datasets.Value("string"), "image_id": datasets.Value("string"),
        "caption": datasets.Value("string"), "raw_caption": datasets.Value("string"),
        "subreddit": datasets.Value("string"), "url": datasets.Value("string"),
        "author": datasets.Value("string"), "score": datasets.Value("int64"),
        "created_utc": datasets.Value("float64"), "permalink": datasets.Value("string"),
        "width": datasets.Value("int32"), "height": datasets.Value("int32"),
    })
    tables = {}
    for name, rows in splits.items():
        columns: dict[str, list] = {key: [] for key in features}
        for record, image in rows:
            row = {**asdict(record), "image_path": image.path.relative_to(out_dir).as_posix(),
                   "width": image.width, "height": image.height}
            for key in features:
                columns[key].append(row[key])
        tables[name] = datasets.Dataset.from_dict(columns, features=features)
    dataset = datasets.DatasetDict(tables)
    dataset.save_to_disk(str(out_dir / DATASET_DIR))
    return dataset


def load_redcaps(source: str | Path, **load_kwargs: object):
    """Load a saved subset as a `DatasetDict`: a directory written by `build_redcaps` (its `image_path` is
    relative to that directory), or else a dataset repo on the Hugging Face Hub, e.g. one the subset was
    pushed to. Raises `RedcapsError` when neither is available."""
    import datasets

    local = Path(source)
    for path in (local / DATASET_DIR, local):
        if (path / "dataset_dict.json").is_file():
            return datasets.load_from_disk(str(path))
    if local.exists() or "/" not in str(source) or str(source).startswith((".", "/")):
        raise RedcapsError(f"no saved RedCaps dataset in {local}; run `capbot data redcaps` first",
                           reason="missing_dataset")
    return _load_from_hub(str(source), **load_kwargs)


# --- the whole pipeline -------------------------------------------------------------------------------------

def build_redcaps(
    records: Sequence[RedcapsRecord],
    out_dir: str | Path,
    *,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    counts: Sequence[int | None] | None = DEFAULT_COUNTS,
    seed: int = 0,
    workers: int = 16,
    options: FetchOptions = FetchOptions(),
    client: httpx.Client | None = None,
    show_progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> RedcapsBuild:
    """Split `records`, download a subset of each split (`counts` per split; None = every image), and save it.

    Raises `RedcapsError(reason="no_images")` when not a single image could be downloaded.
    """
    out = Path(out_dir)
    wanted = _check_counts(counts)
    splits = split_records(records, ratios, seed)

    def fetcher(split: str) -> Callable[[list[ImageJob]], FetchReport]:
        return lambda jobs: fetch_images(jobs, client=client, workers=workers, options=options,
                                         show_progress=show_progress, label=f"{split} images", sleep=sleep)

    downloads = {name: download_split(splits[name], out / name, wanted[name], fetch=fetcher(name)) for name in SPLITS}
    failures = Counter(f.kind for d in downloads.values() for f in d.report.failures)
    attempted = sum(len(d.report.images) + len(d.report.failures) for d in downloads.values())
    if attempted and not any(d.images for d in downloads.values()):
        raise RedcapsError(
            f"none of {attempted} images could be downloaded (failures by kind: {dict(failures)}); "
            "check the network connection", reason="no_images")
    rows = {name: downloads[name].images for name in SPLITS}
    captions = {name: write_coco_captions(rows[name], out / name, out / "annotations" / f"captions_{name}.json")
                for name in SPLITS}
    save_dataset(rows, out)
    build = RedcapsBuild(out, out / DATASET_DIR, captions, {n: len(rows[n]) for n in SPLITS}, wanted,
                         dict(failures), attempted)
    _write_report(build, downloads)
    log.info("redcaps subset saved", extra={"out": str(out), **build.counts, "failed": sum(failures.values())})
    return build


def _check_counts(counts: Sequence[int | None] | None) -> dict[str, int | None]:
    if counts is None:
        return {name: None for name in SPLITS}
    values = list(counts)
    if len(values) != 3 or any(c is not None and (not isinstance(c, int) or c < 0) for c in values):
        raise RedcapsError(f"subset counts must be three non-negative integers (train,val,test), got {counts}",
                           reason="bad_counts")
    return dict(zip(SPLITS, values))


def _write_report(build: RedcapsBuild, downloads: Mapping[str, _SplitDownload]) -> None:
    report = {
        "counts": build.counts, "wanted": build.wanted, "shortfall": build.shortfall,
        "attempted": build.attempted, "failures": build.failures,
        "failed_images": [asdict(f) for d in downloads.values() for f in d.report.failures],
    }
    (build.out_dir / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
