"""Engines, sessions and migrations. The caller owns each unit of work (one `session_scope` per request).

SQLite gets WAL, a busy timeout, foreign keys and `BEGIN IMMEDIATE` transactions so that threads
writing at once wait for each other instead of failing with "database is locked".
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from storage.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000
_MIGRATION_LOCK_KEY = 0x6361_706D  # "capm": Postgres advisory lock held while migrating
_IN_PROCESS_MIGRATION_LOCK = threading.Lock()  # Alembic's `context` proxy is process-global


def create_engine_for(url: str, *, echo: bool = False, pool_size: int | None = None) -> Engine:
    """Build an engine for a SQLAlchemy URL (sqlite:///path or postgresql+psycopg://...).

    A SQLite file's parent directory is created. The URL's password never appears in logs.
    `pool_size`: a server database's connections this engine keeps at most, with no overflow beyond
    them (callers wait for a free one); None = SQLAlchemy's default (5, plus 10 overflow).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, echo=echo)
    limits = {} if pool_size is None else {"pool_size": pool_size, "max_overflow": 0}
    return create_engine(url, echo=echo, pool_pre_ping=True, **limits)


def _sqlite_engine(url: str, *, echo: bool) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, echo=echo, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _use_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        # A deferred transaction that reads and then writes cannot wait for the write lock (SQLite
        # returns "database is locked" at once to avoid deadlock); taking it up front lets it wait.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the database to WAL (a no-op once it is: the mode is stored in the file).

    Several processes opening a new database at once (bots and cron, parallel migrations) each take a shared
    lock and ask for the exclusive one the switch needs; SQLite answers such a deadlock "database is locked"
    at once instead of calling the busy handler, so retry for as long as the busy timeout allows.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A sessionmaker whose sessions keep loaded attributes usable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commits if the block succeeds, rolls back if it raises, always closes."""
    session = session_factory(engine)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(url: str, revision: str = "head") -> str | None:
    """Migrate the database at `url` up to `revision` (default: the newest); returns the new revision."""
    return _migrate(url, lambda config: command.upgrade(config, revision))


def downgrade(url: str, revision: str = "base") -> str | None:
    """Migrate the database at `url` down to `revision` ("base" = empty); returns the new revision."""
    return _migrate(url, lambda config: command.downgrade(config, revision))


def _migrate(url: str, run) -> str | None:  # type: ignore[no-untyped-def]
    with _IN_PROCESS_MIGRATION_LOCK:
        return _migrate_locked(url, run)


def _migrate_locked(url: str, run) -> str | None:  # type: ignore[no-untyped-def]
    engine = create_engine_for(url)
    try:
        with _connect(engine) as connection:
            if engine.dialect.name == "postgresql":
                # Several processes starting at once (Modal containers, bot + cron) migrate one at a
                # time; the later ones then find the schema at head and do nothing. SQLite's
                # BEGIN IMMEDIATE serialises them already.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            else:
                _begin_sqlite_migration(connection)
            config = _alembic_config()
            config.attributes["connection"] = connection
            run(config)
            connection.commit()
        revision = current_revision(engine)
        log.info("database migrated", extra={"revision": revision, "backend": engine.dialect.name})
        return revision
    finally:
        engine.dispose()


def _begin_sqlite_migration(connection) -> None:  # type: ignore[no-untyped-def]
    """One transaction (BEGIN IMMEDIATE: the write lock) around the whole upgrade. Left to itself Alembic
    commits after each revision on SQLite, which has no transactional DDL, so a second process could run
    a revision between two of ours and both would then update the same version row."""
    # Off before the transaction begins (inside one the pragma does nothing): rebuilding a table in batch
    # mode must not fire ON DELETE CASCADE on the rows that refer to it. The engine is disposed afterwards.
    connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
    connection.begin()


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None for an empty database)."""
    with _connect(engine) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision in storage/migrations."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def require_current_schema(engine: Engine) -> None:
    """Raise `DatabaseUnavailable` unless the database is reachable and migrated to the newest revision."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise DatabaseUnavailable(
            f"the database schema is at {current or 'nothing'} but this capbot needs {head}; "
            "run `capbot db upgrade`",
            reason="schema_outdated",
        )


@contextmanager
def _connect(engine: Engine) -> Iterator:  # type: ignore[type-arg]
    try:
        connection = engine.connect()
    except OperationalError as exc:
        url = engine.url.render_as_string(hide_password=True)
        raise DatabaseUnavailable(
            f"cannot connect to the database at {url}: {exc.orig}", reason="db_unreachable"
        ) from exc
    with connection:
        yield connection
