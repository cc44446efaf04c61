"""A resumable HTTP file downloader for large dataset archives.

Bytes go to `<dest>.part` and are renamed to `dest` only once the size (and checksum, when known) check out,
so an existing `dest` is always complete. An interrupted transfer resumes from the `.part` file with an HTTP
`Range` request; a server that ignores `Range` gets a fresh start. Transient failures (timeouts, dropped
connections, 5xx) are retried with exponential backoff; the budget resets whenever an attempt made progress,
so a long download over a flaky link finishes while a dead server fails after a bounded number of tries.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from storage.errors import UserError

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes \*/(\d+)")
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
_MAX_BACKOFF_S = 60.0


class DownloadError(UserError):
    """A download failed for a reason worth telling the user (reason: not_found, http_status, timeout,
    connection, size_mismatch, checksum, disk_full)."""


@dataclass(frozen=True)
class DownloadResult:
    """What `download_file` did."""

    path: Path
    size: int
    skipped: bool  # the file was already complete; no request was made
    resumed_from: int  # bytes already on disk when the final attempt began (0 = from scratch)
    attempts: int  # HTTP requests made


class _Retry(Exception):
    """A transient failure: try again after a backoff."""

    def __init__(self, reason: str, message: str, *, restart: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.restart = restart  # the partial file cannot be resumed: delete it first


def byte_progress(show: bool) -> Progress:
    """A rich progress display for byte counts (disabled when `show` is False)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),  # stdout stays clean for command output
        disable=not show,
    )


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    client: httpx.Client | None = None,
    expected_size: int | None = None,
    sha256: str | None = None,
    timeout: float = 30.0,
    retries: int = 5,
    backoff_s: float = 1.0,
    show_progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> DownloadResult:
    """Download `url` to `dest`, resuming a partial `.part` file and verifying size and checksum.

    `client` lets callers (and tests) supply their own `httpx.Client`; without one a client that follows
    redirects is created for this call. `retries` bounds consecutive failed attempts that made no progress.
    Raises `DownloadError` for anything that retrying did not fix.
    """
    dest = Path(dest)
    if dest.exists() and (expected_size is None or dest.stat().st_size == expected_size):
        return DownloadResult(dest, dest.stat().st_size, skipped=True, resumed_from=0, attempts=0)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    own_client = client is None
    client = client or httpx.Client(follow_redirects=True)
    try:
        attempts, resumed_from = _fetch_with_retries(
            client, url, part, expected_size, timeout, retries, backoff_s, show_progress, sleep
        )
    finally:
        if own_client:
            client.close()
    _verify(part, url, expected_size, sha256)
    os.replace(part, dest)
    _validator_path(part).unlink(missing_ok=True)
    size = dest.stat().st_size
    log.info("download complete", extra={"url": url, "path": str(dest), "bytes": size, "attempts": attempts})
    return DownloadResult(dest, size, skipped=False, resumed_from=resumed_from, attempts=attempts)


def _fetch_with_retries(
    client: httpx.Client,
    url: str,
    part: Path,
    expected_size: int | None,
    timeout: float,
    retries: int,
    backoff_s: float,
    show_progress: bool,
    sleep: Callable[[float], None],
) -> tuple[int, int]:
    """Run attempts until the `.part` file is complete; returns (requests made, offset of the last one)."""
    attempts = failures = 0
    while True:
        offset = _part_size(part)
        if expected_size is not None and offset > expected_size:
            part.unlink()  # longer than the real file: it cannot be a prefix of it
            offset = 0
        if expected_size is not None and offset == expected_size:
            return attempts, offset  # finished earlier but not yet verified and renamed
        attempts += 1
        try:
            _attempt(client, url, part, offset, expected_size, timeout, show_progress)
            return attempts, offset
        except _Retry as exc:
            if exc.restart:
                part.unlink(missing_ok=True)
            failures = 0 if _part_size(part) > offset else failures + 1
            if failures > retries:
                have = _part_size(part)
                resume = f"; run it again to resume from byte {have}" if have else ""
                raise DownloadError(
                    f"could not download {url}: {exc} (gave up after {attempts} attempts{resume})",
                    reason=exc.reason,
                ) from None
            delay = min(backoff_s * 2 ** max(failures - 1, 0), _MAX_BACKOFF_S)
            log.warning(
                "download attempt failed; retrying",
                extra={"url": url, "reason": exc.reason, "error": str(exc), "have_bytes": _part_size(part), "delay_s": delay},
            )
            sleep(delay)


def _attempt(
    client: httpx.Client,
    url: str,
    part: Path,
    offset: int,
    expected_size: int | None,
    timeout: float,
    show_progress: bool,
) -> None:
    """One GET: append to `part` from `offset` (or restart at 0 if the server ignores Range)."""
    # identity: Content-Length and Range must count the bytes we store, not a compressed stream of them.
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        validator = _validator_path(part)
        if validator.is_file():  # resume only if the file is unchanged; otherwise the server sends it whole
            headers["If-Range"] = validator.read_text()
    try:
        with client.stream("GET", url, headers=headers, timeout=httpx.Timeout(timeout)) as response:
            start, total = _plan(response, url, offset)
            if start is None:
                return  # 416 for a part that already holds every byte
            if expected_size is not None and total is not None and total != expected_size:
                raise DownloadError(
                    f"{url} is {total} bytes but {expected_size} were expected; the server or mirror serves "
                    "a different file",
                    reason="size_mismatch",
                )
            _check_disk(part, (total or 0) - start)
            _remember_validator(response, part)
            _write_body(response, part, start, total, show_progress)
    except httpx.TimeoutException as exc:
        raise _Retry("timeout", f"timed out after {timeout:g} s ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise _Retry("connection", f"connection failed: {exc}") from None


def _validator_path(part: Path) -> Path:
    return part.with_name(part.name + ".validator")


def _remember_validator(response: httpx.Response, part: Path) -> None:
    """Keep the file's ETag (or Last-Modified) beside the partial file, for If-Range on a later resume."""
    etag = response.headers.get("ETag")
    value = etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified")
    if value:
        _validator_path(part).write_text(value)
    else:
        _validator_path(part).unlink(missing_ok=True)


def _plan(response: httpx.Response, url: str, offset: int) -> tuple[int | None, int | None]:
    """From the response status and headers: where writing starts and the full size, when known."""
    status = response.status_code
    if status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != offset:
            raise _Retry("http_status", "the server sent a range we did not ask for", restart=True)
        return offset, None if match.group(3) == "*" else int(match.group(3))
    if status == 200:
        length = response.headers.get("Content-Length")
        return 0, int(length) if length and length.isdigit() else None
    if status == 416 and offset:
        match = _UNSATISFIED_RANGE.match(response.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == offset:
            return None, offset
        raise _Retry("http_status", "the server refused to resume the partial file", restart=True)
    if status in (404, 410):
        raise DownloadError(f"{url} was not found (HTTP {status}); check the URL or mirror", reason="not_found")
    if status in _TRANSIENT_STATUS:
        raise _Retry("http_status", f"HTTP {status} from the server")
    raise DownloadError(f"{url} answered HTTP {status}", reason="http_status")


def _write_body(
    response: httpx.Response, part: Path, start: int, total: int | None, show_progress: bool
) -> None:
    mode = "ab" if start else "wb"
    with byte_progress(show_progress) as progress, part.open(mode) as out:
        task = progress.add_task(part.name.removesuffix(".part"), total=total, completed=start)
        # No chunk size: a re-chunking buffer would lose its tail when the connection drops.
        for chunk in response.iter_raw():
            out.write(chunk)
            progress.advance(task, len(chunk))
    written = _part_size(part)
    if total is not None and written != total:
        raise _Retry("connection", f"the transfer ended at {written} of {total} bytes")


def _verify(part: Path, url: str, expected_size: int | None, sha256: str | None) -> None:
    """Check the finished `.part` file; a wrong file is deleted so the next run starts clean."""
    size = _part_size(part)
    if expected_size is not None and size != expected_size:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url} gave {size} bytes, expected {expected_size}", reason="size_mismatch")
    if sha256 is not None:
        digest = file_sha256(part)
        if digest != sha256.lower():
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{url} failed its checksum (sha256 {digest}, expected {sha256}); the partial file was removed",
                reason="checksum",
            )


def file_sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _check_disk(part: Path, needed: int) -> None:
    free = shutil.disk_usage(part.parent).free
    if needed > free:
        raise DownloadError(
            f"not enough disk space for {part.name.removesuffix('.part')}: {needed} bytes needed, {free} free",
            reason="disk_full",
        )


def _part_size(part: Path) -> int:
    try:
        return part.stat().st_size
    except FileNotFoundError:
        return 0
