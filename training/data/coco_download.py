"""Download and extract COCO 2017 (train and val images, caption annotations) from the official URLs.

Layout under `out_dir` (the same as the official zips unpack to, which the COCO loader reads):

    downloads/train2017.zip ...             the archives (deleted after extraction with keep_archives=False)
    train2017/*.jpg, val2017/*.jpg          images
    annotations/captions_{train,val}2017.json

Each part is skipped entirely (no request) once its extraction marker exists; an interrupted download
resumes from its `.part` file. Known sizes and checksums are checked when the files come from the official
host; a mirror given with `base_urls` is checked against its own Content-Length.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from storage.errors import UserError
from training.data.archives import completed_extraction, extract_zip
from training.data.download import DownloadError, download_file

log = logging.getLogger(__name__)

OFFICIAL_BASE_URL = "http://images.cocodataset.org"
# The same bucket over HTTPS; the known sizes and checksums hold for both.
OFFICIAL_BASE_URLS = (OFFICIAL_BASE_URL, "https://images.cocodataset.org", "https://s3.amazonaws.com/images.cocodataset.org")


@dataclass(frozen=True)
class CocoPart:
    """One downloadable COCO 2017 archive."""

    name: str
    path: str  # relative to the base URL
    size: int  # bytes of the official archive
    sha256: str | None  # of the official archive, where published checksums agree

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


COCO_PARTS: dict[str, CocoPart] = {
    part.name: part
    for part in (
        CocoPart("train2017", "zips/train2017.zip", 19_336_861_798, None),
        CocoPart("val2017", "zips/val2017.zip", 815_585_330,
                 "4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05"),
        CocoPart("annotations", "annotations/annotations_trainval2017.zip", 252_907_541,
                 "113a836d90195ee1f884e704da6304dfaaecff1f023f49b6ca93c4aaae470268"),
    )
}
DEFAULT_PARTS = ("train2017", "val2017", "annotations")


@dataclass(frozen=True)
class PartResult:
    """What happened to one part."""

    name: str
    archive: Path
    skipped: bool  # already extracted; nothing was requested
    downloaded_bytes: int  # bytes of the archive on disk after this run (0 when skipped)
    files: int  # files the archive held


@dataclass(frozen=True)
class CocoDownload:
    """The result of `download_coco`: where things are and what was done."""

    root: Path
    parts: list[PartResult]

    def image_dir(self, split: str) -> Path:
        """Directory of a split's images, e.g. `image_dir("val2017")`."""
        return self.root / split

    def captions_file(self, split: str) -> Path:
        """The COCO captions JSON of a split, e.g. `captions_file("val2017")`."""
        return self.root / "annotations" / f"captions_{split}.json"


def download_coco(
    out_dir: str | Path,
    *,
    parts: Sequence[str] = DEFAULT_PARTS,
    base_urls: Sequence[str] = (OFFICIAL_BASE_URL,),
    client: httpx.Client | None = None,
    keep_archives: bool = True,
    timeout: float = 60.0,
    retries: int = 5,
    show_progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> CocoDownload:
    """Download and extract the named COCO 2017 parts into `out_dir`.

    `base_urls` are tried in order for each part (a mirror first, the official host as a fallback, say).
    Raises `UserError` for an unknown part and `DownloadError` when no base URL delivered a part.
    """
    unknown = [p for p in parts if p not in COCO_PARTS]
    if unknown or not parts:
        raise UserError(f"unknown COCO part(s) {unknown or list(parts)}; choose from {', '.join(COCO_PARTS)}",
                        reason="bad_part")
    if not base_urls:
        raise UserError("no base URL to download COCO from", reason="bad_url")
    root = Path(out_dir)
    fetch = _Fetcher(base_urls, client, timeout, retries, show_progress, sleep)
    results = [_get_part(COCO_PARTS[name], root, fetch, keep_archives, show_progress) for name in parts]
    return CocoDownload(root, results)


def _get_part(part: CocoPart, root: Path, fetch: "_Fetcher", keep_archives: bool, show_progress: bool) -> PartResult:
    archive = root / "downloads" / part.filename
    done = completed_extraction(archive, root)
    if done is not None:
        log.info("coco part already complete", extra={"part": part.name})
        return PartResult(part.name, archive, skipped=True, downloaded_bytes=0, files=done.files)
    size = fetch(part, archive)
    extracted = extract_zip(archive, root, show_progress=show_progress)
    if not keep_archives:
        archive.unlink()
    return PartResult(part.name, archive, skipped=False, downloaded_bytes=size, files=extracted.files)


@dataclass
class _Fetcher:
    """Downloads one part, trying each base URL in turn."""

    base_urls: Sequence[str]
    client: httpx.Client | None
    timeout: float
    retries: int
    show_progress: bool
    sleep: Callable[[float], None]

    def __call__(self, part: CocoPart, archive: Path) -> int:
        errors: list[str] = []
        for base in self.base_urls:
            official = base.rstrip("/") in OFFICIAL_BASE_URLS
            url = f"{base.rstrip('/')}/{part.path}"
            try:
                result = download_file(
                    url, archive, client=self.client,
                    expected_size=part.size if official else None,
                    sha256=part.sha256 if official else None,
                    timeout=self.timeout, retries=self.retries,
                    show_progress=self.show_progress, sleep=self.sleep,
                )
                return result.size
            except DownloadError as exc:
                log.warning("coco download failed", extra={"part": part.name, "url": url, "reason": exc.reason})
                errors.append(exc.message)
                last = exc
        if len(errors) == 1:
            raise last
        raise DownloadError(f"could not download COCO {part.name} from any mirror: " + "; ".join(errors),
                            reason=last.reason)

