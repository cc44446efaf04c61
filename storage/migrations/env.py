"""Alembic environment: the URL or connection comes from the caller (storage.db.upgrade / alembic.ini).

`render_as_batch=True` makes every ALTER go through batch mode, so SQLite (which rebuilds tables) and
Postgres share one migration history.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from storage.db import create_engine_for
from storage.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    if connection.dialect.name == "sqlite" and not connection.in_transaction():
        # Rebuilding a table in batch mode must not fire ON DELETE CASCADE on the rows that refer to it.
        connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine_for(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as own_connection:
            _run(own_connection)
            own_connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("capbot migrations run online only: use `capbot db upgrade`")
run_migrations_online()
