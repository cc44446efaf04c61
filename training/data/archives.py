"""Safe zip extraction with progress and a completion marker.

Every member name is checked before anything is written: absolute paths, `..` components and symbolic links
are refused, so an archive cannot write outside its destination. A marker file is written only after the
last member, so a finished extraction is skipped next time and an interrupted one is redone (members whose
size already matches are not rewritten).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from storage.errors import UserError
from training.data.download import byte_progress

log = logging.getLogger(__name__)

_COPY_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")  # a Windows absolute path such as C:/x


class ArchiveError(UserError):
    """An archive that cannot be extracted (reason: bad_archive, unsafe_archive, disk_full)."""


@dataclass(frozen=True)
class ExtractResult:
    """What `extract_zip` did."""

    dest: Path
    files: int  # regular files the archive holds
    skipped: bool  # a marker showed the archive was already extracted


def marker_path(archive: Path, dest: Path) -> Path:
    """Where the completion marker for `archive` extracted into `dest` lives."""
    return Path(dest) / f".{Path(archive).name}.extracted"


def completed_extraction(archive: Path, dest: Path) -> ExtractResult | None:
    """The earlier extraction of `archive` into `dest` if it finished (the archive may since be deleted)."""
    marker = marker_path(archive, dest)
    if not marker.is_file():
        return None
    return ExtractResult(Path(dest), int(json.loads(marker.read_text()).get("files", 0)), skipped=True)


def extract_zip(archive: str | Path, dest: str | Path, *, show_progress: bool = True) -> ExtractResult:
    """Extract `archive` into `dest`, refusing unsafe member names; skipped when already complete."""
    archive, dest = Path(archive), Path(dest)
    done = completed_extraction(archive, dest)
    if done is not None:
        return done
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            _check_members(members, archive)
            _check_space(members, dest, archive)
            files = _extract_members(zf, members, dest, archive.name, show_progress)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise ArchiveError(f"{archive} is not a readable zip file ({exc}); delete it and download it again",
                           reason="bad_archive") from None
    marker = marker_path(archive, dest)
    marker.write_text(json.dumps({"archive": archive.name, "bytes": archive.stat().st_size, "files": files}))
    log.info("archive extracted", extra={"archive": str(archive), "dest": str(dest), "files": files})
    return ExtractResult(dest, files, skipped=False)


def _check_members(members: list[zipfile.ZipInfo], archive: Path) -> None:
    """Refuse the whole archive if any member could land outside the destination."""
    for info in members:
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        is_link = stat.S_ISLNK(info.external_attr >> 16)
        if name.startswith("/") or _DRIVE.match(name) or ".." in parts or is_link:
            raise ArchiveError(
                f"refusing to extract {archive.name}: member {info.filename!r} would be written outside the "
                "destination (absolute path, '..' or a symbolic link)",
                reason="unsafe_archive",
            )


def _check_space(members: list[zipfile.ZipInfo], dest: Path, archive: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    needed = sum(info.file_size for info in members)
    free = shutil.disk_usage(dest).free
    if needed > free:
        raise ArchiveError(
            f"not enough disk space to extract {archive.name}: {needed} bytes needed, {free} free in {dest}",
            reason="disk_full",
        )


def _extract_members(
    zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], dest: Path, label: str, show_progress: bool
) -> int:
    files = 0
    with byte_progress(show_progress) as progress:
        task = progress.add_task(f"extract {label}", total=sum(i.file_size for i in members))
        for info in members:
            target = dest / info.filename.replace("\\", "/")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            files += 1
            if not (target.is_file() and target.stat().st_size == info.file_size):
                _copy_member(zf, info, target)
            progress.advance(task, info.file_size)
    return files


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    # Written under a temporary name so an interruption never leaves a truncated file at the real name.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    with zf.open(info) as src, tmp.open("wb") as out:
        shutil.copyfileobj(src, out, _COPY_CHUNK)
    tmp.replace(target)
