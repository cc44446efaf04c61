"""Storage rules in Modal mode: PostgreSQL only, blob writes committed, model files made visible.

A Modal Volume is not a shared disk: a container sees what was committed when it started, its own
writes reach other containers only after `volume.commit()`, and it sees theirs only after
`volume.reload()`, which fails while files on the volume are open. SQLite on such a volume, with the
web, Discord and retraining containers all writing, would lose data; these helpers enforce the rules.
The volume objects are duck-typed (`commit()`, `reload()`), so tests pass local stand-ins.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterable, Protocol

from sqlalchemy.engine import make_url

from storage.errors import UserError
from storage.blobs import LocalBlobStore

log = logging.getLogger(__name__)


class ModalStorageError(UserError):
    """Storage is configured in a way Modal containers cannot use safely."""


class Committable(Protocol):
    def commit(self) -> None: ...


class Reloadable(Protocol):
    def reload(self) -> None: ...


def require_postgres(database_url: str, *, secret_name: str) -> str:
    """Return `database_url` if it is PostgreSQL; otherwise raise `ModalStorageError` saying what to set."""
    try:
        backend = make_url(database_url).get_backend_name() if database_url else ""
    except Exception:  # an unparseable URL is as unusable as a missing one
        backend = "unparseable"
    if backend == "postgresql":
        return database_url
    found = "no CAPBOT_DATABASE_URL" if not database_url else f"a {backend or 'non-PostgreSQL'} database URL"
    raise ModalStorageError(
        f"capbot on Modal needs PostgreSQL, but the containers got {found}: set CAPBOT_DATABASE_URL="
        f"postgresql://... in the Modal Secret {secret_name!r} (SQLite on a Modal Volume with several "
        "writing containers loses data)",
        reason="modal_needs_postgres",
    )


class CommittingBlobStore(LocalBlobStore):
    """A `LocalBlobStore` on a mounted Volume that commits after each write, so the retraining container
    (and any other) sees every stored image. A failed commit is logged, not raised: the image is on the
    volume and goes out with the next commit (or when the container stops)."""

    def __init__(self, root: str | Path, volume: Committable) -> None:
        super().__init__(root)
        self._volume = volume
        self._lock = threading.Lock()  # one commit at a time per container

    def put(self, data: bytes) -> str:
        """Store `data`, then commit the volume; returns its SHA-256."""
        sha = super().put(data)
        self._commit("put", sha)
        return sha

    def delete(self, sha: str) -> bool:
        """Remove `sha`, then commit the volume; True if something was removed."""
        removed = super().delete(sha)
        if removed:
            self._commit("delete", sha)
        return removed

    def _commit(self, action: str, sha: str) -> None:
        try:
            with self._lock:
                self._volume.commit()
        except Exception as exc:
            log.warning("blob volume commit failed; it goes out with the next commit: %s", exc,
                        extra={"action": action, "sha256": sha})


def open_paths_under(root: str | Path, *, proc: Path = Path("/proc/self")) -> list[str]:
    """Files under `root` this process holds open or memory-mapped (Linux); [] elsewhere."""
    prefixes = {str(Path(root)), os.path.realpath(root)}
    return sorted({path for path in _open_paths(proc) if any(_under(path, p) for p in prefixes)})


def _open_paths(proc: Path) -> Iterable[str]:
    fd_dir = proc / "fd"
    if fd_dir.is_dir():
        for fd in os.listdir(fd_dir):
            try:
                yield os.readlink(fd_dir / fd)
            except OSError:  # closed meanwhile
                continue
    maps = proc / "maps"
    if maps.is_file():
        for line in maps.read_text(errors="replace").splitlines():
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].startswith("/"):
                yield parts[5]


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


class VolumeModelFiles:
    """Gets a model directory of the models Volume ready to load in a (possibly warm) container.

    `prepare(location)` reloads the volume when the directory was committed after this container
    started, then copies it to local disk (`stage_dir`) and returns the copy. Serving from the copy means
    no file on the volume stays open (a CPU model memory-maps its weights), so the next reload can run.
    """

    def __init__(self, volume: Reloadable, mount: str | Path, stage_dir: str | Path | None = None) -> None:
        self.volume = volume
        self.mount = Path(mount)
        self.stage_dir = Path(stage_dir) if stage_dir is not None else Path(tempfile.gettempdir()) / "capbot-models"

    def prepare(self, location: str) -> str:
        """The path to load `location` from: a local copy for a directory on the volume, else `location`."""
        self.make_visible(location)
        path = Path(location)
        if not _under(str(path), str(self.mount)):
            return location  # a hub id or another disk: loaded as it is
        return str(self._stage(path))

    def make_visible(self, location: str) -> None:
        """Reload the volume when `location` is on it but not yet seen here; raise if that is not possible.

        Reloading fails while files on the volume are open, so it is only tried when none are;
        otherwise this raises and the caller retries at its next check.
        """
        path = Path(location)
        if path.exists() or not _under(str(path), str(self.mount)):
            return  # already visible, or not on this volume
        busy = open_paths_under(self.mount)
        if busy:
            raise ModalStorageError(
                f"{location} is not visible in this container yet and the models volume cannot be reloaded "
                f"while files on it are open ({busy[0]}{' and more' if len(busy) > 1 else ''})",
                reason="volume_busy",
            )
        self.volume.reload()
        if not path.exists():
            raise ModalStorageError(
                f"{location} is not on the models volume even after a reload; was it committed before it was "
                "promoted?", reason="model_missing")
        log.info("models volume reloaded", extra={"location": location})

    def _stage(self, path: Path) -> Path:
        target = self.stage_dir / path.name
        if not target.is_dir():
            started = time.perf_counter()
            tmp = self.stage_dir / f".{path.name}.tmp-{secrets.token_hex(3)}"
            shutil.copytree(path, tmp)
            os.replace(tmp, target)  # a half-copied directory is never loaded
            log.info("model staged on local disk", extra={"location": str(path), "copy_ms": round(
                (time.perf_counter() - started) * 1000)})
        for old in self.stage_dir.iterdir():  # earlier versions: a loaded model no longer needs its files
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
        return target
