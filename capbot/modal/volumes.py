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
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

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
    """Makes a model directory of the models Volume visible to a (possibly warm) container.

    `prepare(location)` reloads the volume when the directory was committed after this container
    started, and returns `location` itself: the weights load straight from the Volume (no copy to local
    disk on the cold start's path). A model on the GPU holds no file of the Volume open once loaded, so
    the next reload can run; one that does (a memory-mapped CPU model) makes `make_visible` refuse the
    reload, and the loaded version keeps serving until the container is replaced.
    """

    def __init__(self, volume: Reloadable, mount: str | Path) -> None:
        self.volume = volume
        self.mount = Path(mount)

    def prepare(self, location: str) -> str:
        """The path to load `location` from (itself, made visible first when it is on the volume)."""
        self.make_visible(location)
        return location

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


@contextmanager
def committing_every(volume: Committable, seconds: float) -> Iterator[None]:
    """Commit `volume` every `seconds` while the block runs, and once at the end (even when it fails or is
    interrupted), so a preempted or crashed job leaves its latest checkpoint behind."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            commit_quietly(volume, "periodic")

    thread = threading.Thread(target=loop, name="capbot-volume-commit", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)
        commit_quietly(volume, "final")


def commit_quietly(volume: Committable, why: str) -> None:
    """Commit `volume`; a failure is logged (the next commit, or the container's exit, takes the files)."""
    try:
        volume.commit()
    except Exception as exc:
        log.warning("volume commit failed: %s", exc, extra={"why": why})


def reload_quietly(volume: Reloadable, what: str) -> None:
    """Reload `volume`; a failure is logged (a fresh container already sees the latest commit)."""
    try:
        volume.reload()
    except Exception as exc:
        log.warning("volume reload failed; using the state this container started with: %s", exc,
                    extra={"volume": what})


def committed_after(trainer: Any, volume: Committable) -> Any:
    """`trainer`, then a commit of the volume its model directory was written to (errors propagate: an
    uncommitted candidate must not be promoted)."""
    def train_then_commit(job: Any) -> Path:
        model_dir = trainer(job)
        volume.commit()
        log.info("candidate committed to the models volume", extra={"model_dir": str(model_dir)})
        return model_dir

    return train_then_commit
