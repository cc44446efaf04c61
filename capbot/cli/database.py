"""The one way commands reach the configured database: ready to use, or one clear error.

The embedded SQLite database is created and migrated on first use (as `capbot run` does), so the
README's commands work in an empty directory. A server database (PostgreSQL) is migrated only on
purpose: a command finding it behind refuses with "run `capbot db upgrade`".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

from storage import db


def ensure_schema(url: str) -> None:
    """Migrate an embedded SQLite database to the newest schema; require it of any other database.

    Raises `storage.errors.DatabaseUnavailable` (a user error naming `capbot db upgrade`) when a server
    database is behind or unreachable.
    """
    engine = db.create_engine_for(url)
    try:
        if engine.dialect.name == "sqlite" and db.current_revision(engine) != db.head_revision():
            db.upgrade(url)  # logs "database migrated"
        db.require_current_schema(engine)
    finally:
        engine.dispose()


@contextmanager
def open_database(url: str) -> Iterator[Engine]:
    """An engine on the database at `url`, its schema checked (or, for SQLite, migrated) first."""
    ensure_schema(url)
    engine = db.create_engine_for(url)
    try:
        yield engine
    finally:
        engine.dispose()
