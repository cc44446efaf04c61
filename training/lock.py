"""The retraining run lock: at most one `retrain` runs at a time, across processes and machines.

Which lock, and why:
- **PostgreSQL** (production, possibly several machines or Modal containers sharing one database): a
  session-level advisory lock (`pg_try_advisory_lock`) held on a dedicated connection for the whole run.
  Every process that can reach the database sees it, and the server drops it the moment the holding
  connection goes away, so a crashed or killed run never leaves a stale lock behind.
- **SQLite** (the embedded default, one machine): an OS file lock (`flock`/`LockFileEx` via `filelock`) on a
  file next to the data. The kernel releases it when the holding process exits for any reason, so here too
  there is nothing stale to recover; a small `.info` file beside it names the holder for error messages.
A row-based lock was rejected: it needs a heartbeat and a staleness timeout to survive crashes, and both
lock kinds above get that from the operating system or the database server for free.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import zlib
from pathlib import Path
from typing import Protocol

from filelock import FileLock, Timeout
from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from storage.errors import UserError

log = logging.getLogger(__name__)

# The key of capbot's tables in the `public` schema: every capbot process agrees on it without configuration.
ADVISORY_KEY = zlib.crc32(b"capbot.retrain") & 0x7FFFFFFF


def advisory_key(schema: str | None) -> int:
    """The lock key for capbot's tables in `schema`. Advisory locks are per database, not per schema, so two
    deployments sharing a database in separate schemas must not share a key (one would refuse the other's
    retraining); `public` keeps the original key, so processes of an older release still agree with it."""
    if not schema or schema == "public":
        return ADVISORY_KEY
    return zlib.crc32(f"capbot.retrain:{schema}".encode()) & 0x7FFFFFFF


class RetrainLocked(UserError):
    """Another retraining run holds the lock."""

    def __init__(self, holder: str = "") -> None:
        detail = f" ({holder})" if holder else ""
        super().__init__(
            f"another retraining run is already in progress{detail}; try again when it has finished",
            reason="retrain_locked",
        )


class RunLock(Protocol):
    """A non-blocking, process-safe lock; `acquire` raises `RetrainLocked` when it is held elsewhere."""

    def acquire(self) -> None: ...

    def release(self) -> None: ...

    def __enter__(self) -> "RunLock": ...

    def __exit__(self, *exc: object) -> None: ...


class _ContextMixin:
    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder_info() -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


class FileRunLock(_ContextMixin):
    """An OS file lock at `path`; released by the kernel if the process dies."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.info_path = self.path.with_name(self.path.name + ".info")
        # thread_local=False: a lock taken in one thread (the scheduler's) may be released in another.
        self._lock = FileLock(str(self.path), timeout=0, thread_local=False)

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise RetrainLocked(self._read_holder()) from None
        self.info_path.write_text(json.dumps(_holder_info()), encoding="utf-8")
        log.info("retrain lock acquired", extra={"lock": str(self.path)})

    def release(self) -> None:
        if self._lock.is_locked:
            self.info_path.unlink(missing_ok=True)
            self._lock.release()
            log.info("retrain lock released", extra={"lock": str(self.path)})

    def _read_holder(self) -> str:
        try:
            info = json.loads(self.info_path.read_text(encoding="utf-8"))
            return f"pid {info['pid']} on {info['host']} since {info['since']}"
        except (OSError, ValueError, KeyError):
            return ""


class AdvisoryRunLock(_ContextMixin):
    """A PostgreSQL session advisory lock held on its own connection; released if the connection drops.
    The key is `advisory_key` of the schema the engine's connections use, unless given."""

    def __init__(self, engine: Engine, key: int | None = None) -> None:
        self.engine = engine
        self.key = key
        self._conn: Connection | None = None

    def acquire(self) -> None:
        conn = self.engine.connect()
        if self.key is None:
            self.key = advisory_key(conn.execute(text("SELECT current_schema()")).scalar())
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
        conn.commit()  # end the implicit transaction; the session lock outlives it
        if not got:
            conn.close()
            raise RetrainLocked(self._holder())
        self._conn = conn
        log.info("retrain lock acquired", extra={"advisory_key": self.key})

    def release(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            self._conn.commit()
        finally:
            self._conn.close()
            self._conn = None
            log.info("retrain lock released", extra={"advisory_key": self.key})

    def _holder(self) -> str:
        sql = text(
            "SELECT a.pid, a.client_addr, a.backend_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.objid = :k AND l.granted LIMIT 1"
        )
        try:
            with self.engine.connect() as conn:
                row = conn.execute(sql, {"k": self.key}).first()
        except Exception:  # the message is a courtesy; never fail the refusal over it
            return ""
        return f"database backend pid {row[0]}" if row else ""


def run_lock_for(engine: Engine, lock_path: Path | str) -> RunLock:
    """The right lock for this database: advisory on PostgreSQL, a file lock at `lock_path` otherwise."""
    if engine.dialect.name == "postgresql":
        return AdvisoryRunLock(engine)
    return FileRunLock(lock_path)
