"""Download many images in parallel, keeping only files that really are images.

Built for web-scraped datasets such as RedCaps, where a share of the URLs are dead, slow, huge or serve an
HTML page: every failure is classified by kind (`FAILURE_KINDS`) and counted, transient ones are retried a
bounded number of times, and nothing is retried forever. Files are written under a temporary name and
renamed once verified, so a file at its final name is always a complete, decodable image; a rerun skips them.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

log = logging.getLogger(__name__)

FAILURE_KINDS = ("not_found", "http_error", "timeout", "connection", "too_large", "not_image", "removed")
_TRANSIENT = ("timeout", "connection")
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
# Imgur answers deleted images with a redirect to this placeholder picture; it is a valid PNG but not the photo.
_REMOVED_SUFFIXES = ("imgur.com/removed.png",)
_EXTENSIONS: dict[str, str] = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}

IMAGE_EXTENSIONS = tuple(dict.fromkeys(_EXTENSIONS.values()))  # what a saved image's name can end with


@dataclass(frozen=True)
class ImageJob:
    """One image to fetch: saved as `<dest_stem>.<ext>` with the extension of its real format."""

    key: str
    url: str
    dest_stem: Path


@dataclass(frozen=True)
class FetchedImage:
    """A verified image on disk."""

    key: str
    path: Path
    width: int
    height: int
    cached: bool  # already on disk from an earlier run; nothing was requested


@dataclass(frozen=True)
class FetchFailure:
    """An image that could not be fetched, and why."""

    key: str
    url: str
    kind: str  # one of FAILURE_KINDS
    detail: str


@dataclass
class FetchReport:
    """Outcomes in job order."""

    images: list[FetchedImage] = field(default_factory=list)
    failures: list[FetchFailure] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Failures by kind (kinds with no failures left out)."""
        return dict(Counter(f.kind for f in self.failures))


@dataclass(frozen=True)
class FetchOptions:
    """How hard to try for each image."""

    timeout: float = 10.0  # seconds for connect and for each read
    retries: int = 2  # extra attempts after a timeout, dropped connection or 5xx/429
    max_bytes: int = 20 * 1024 * 1024  # larger files are abandoned as "too_large"
    backoff_s: float = 0.5  # doubled after each failed attempt


class _Failed(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def fetch_images(
    jobs: Sequence[ImageJob],
    *,
    client: httpx.Client | None = None,
    workers: int = 16,
    options: FetchOptions = FetchOptions(),
    show_progress: bool = True,
    label: str = "images",
    sleep: Callable[[float], None] = time.sleep,
) -> FetchReport:
    """Fetch `jobs` with a pool of `workers` threads; returns verified images and classified failures."""
    own_client = client is None
    if client is None:
        limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
        client = httpx.Client(follow_redirects=True, limits=limits, headers={"User-Agent": "capbot-dataset/0.1"})
    report = FetchReport()
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, _count_progress(show_progress) as bar:
            task = bar.add_task(label, total=len(jobs))

            def run(job: ImageJob) -> FetchedImage | FetchFailure:
                outcome = fetch_image(job, client, options, sleep)
                bar.advance(task)
                return outcome

            for outcome in pool.map(run, jobs):  # map keeps job order, so results are deterministic
                (report.images if isinstance(outcome, FetchedImage) else report.failures).append(outcome)
    finally:
        if own_client:
            client.close()
    log.info("images fetched", extra={"ok": len(report.images), "failed": len(report.failures), **report.counts()})
    return report


def fetch_image(
    job: ImageJob, client: httpx.Client, options: FetchOptions, sleep: Callable[[float], None] = time.sleep
) -> FetchedImage | FetchFailure:
    """Fetch and verify one image, retrying transient failures at most `options.retries` times."""
    cached = _cached(job)
    if cached is not None:
        return cached
    for attempt in range(options.retries + 1):
        try:
            data = _download(job.url, client, options)
            return _save(job, data)
        except _Failed as exc:
            if exc.kind not in _TRANSIENT or attempt == options.retries:
                log.debug("image failed", extra={"key": job.key, "kind": exc.kind, "detail": str(exc)})
                return FetchFailure(job.key, job.url, exc.kind, str(exc))
            sleep(options.backoff_s * 2**attempt)
    raise AssertionError("unreachable")


def _download(url: str, client: httpx.Client, options: FetchOptions) -> bytes:
    try:
        with client.stream("GET", url, timeout=httpx.Timeout(options.timeout)) as response:
            _check_response(response, options.max_bytes)
            return _read_capped(response, options.max_bytes)
    except httpx.TimeoutException as exc:
        raise _Failed("timeout", f"no answer within {options.timeout:g} s ({type(exc).__name__})") from None
    except (httpx.TransportError, httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise _Failed("connection", f"{type(exc).__name__}: {exc}") from None


def _check_response(response: httpx.Response, max_bytes: int) -> None:
    status = response.status_code
    if status in (404, 410):
        raise _Failed("not_found", f"HTTP {status}")
    if status in _TRANSIENT_STATUS:
        raise _Failed("connection", f"HTTP {status}")  # worth another try, like a dropped connection
    if status != 200:
        raise _Failed("http_error", f"HTTP {status}")
    if str(response.url).endswith(_REMOVED_SUFFIXES):
        raise _Failed("removed", f"the host replaced the image with a placeholder ({response.url})")
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise _Failed("too_large", f"{int(length)} bytes > limit {max_bytes}")


def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    buffer = bytearray()
    for chunk in response.iter_bytes():
        buffer += chunk
        if len(buffer) > max_bytes:  # the header lied or was missing: stop reading
            raise _Failed("too_large", f"more than {max_bytes} bytes")
    return bytes(buffer)


def _save(job: ImageJob, data: bytes) -> FetchedImage:
    """Verify `data` decodes as an image, then write it atomically with its format's extension."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format, img.size
            img.verify()
    except Image.DecompressionBombError as exc:
        raise _Failed("too_large", f"too many pixels ({exc})") from None
    except Exception as exc:  # PIL raises many exception types for input that is not an image
        raise _Failed("not_image", f"not a decodable image ({type(exc).__name__}: {exc})") from None
    path = job.dest_stem.with_name(job.dest_stem.name + _EXTENSIONS.get(fmt or "", f".{(fmt or 'img').lower()}"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return FetchedImage(job.key, path, width, height, cached=False)


def _cached(job: ImageJob) -> FetchedImage | None:
    """An image already saved for this job by an earlier run, if it still opens."""
    for ext in IMAGE_EXTENSIONS:
        path = job.dest_stem.with_name(job.dest_stem.name + ext)
        if path.is_file():
            try:
                with Image.open(path) as img:
                    return FetchedImage(job.key, path, img.size[0], img.size[1], cached=True)
            except Exception:
                path.unlink()  # unreadable leftover: fetch again
    return None


def _count_progress(show: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not show)
