"""Migrations up and down on both databases, and the schema they build matches the models."""

from __future__ import annotations

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from storage import db
from storage.errors import DatabaseUnavailable
from storage.models import Base


def _tables(url: str) -> set[str]:
    engine = db.create_engine_for(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_to_head_then_down_to_empty(database_url):
    assert _tables(database_url) == set()
    assert db.upgrade(database_url) == db.head_revision()
    assert _tables(database_url) == set(Base.metadata.tables)
    assert db.downgrade(database_url) is None
    assert _tables(database_url) == set()
    assert db.upgrade(database_url) == db.head_revision()  # and back up again


def test_migrated_schema_matches_models(database_url):
    db.upgrade(database_url)
    engine = db.create_engine_for(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_require_current_schema_names_the_fix(database_url):
    engine = db.create_engine_for(database_url)
    try:
        with pytest.raises(DatabaseUnavailable, match="capbot db upgrade") as refused:
            db.require_current_schema(engine)
        assert refused.value.reason == "schema_outdated"
        db.upgrade(database_url)
        db.require_current_schema(engine)
    finally:
        engine.dispose()


def test_unreachable_server_is_a_user_error():
    engine = db.create_engine_for("postgresql+psycopg://nobody:secret@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(DatabaseUnavailable) as refused:
        db.current_revision(engine)
    assert refused.value.reason == "db_unreachable"
    assert "secret" not in refused.value.message


def test_sqlite_file_directory_is_created(tmp_path):
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'capbot.db'}"
    db.upgrade(url)
    assert (tmp_path / "nested" / "dir" / "capbot.db").is_file()


def test_session_scope_rolls_back_on_error(engine):
    from storage import registry

    with pytest.raises(RuntimeError):
        with db.session_scope(engine) as session:
            registry.register_version(session, version_id="v1", location="/m/v1")
            raise RuntimeError("boom")
    with db.session_scope(engine) as session:
        assert registry.list_versions(session) == []


def test_concurrent_upgrades_migrate_once(database_url):
    """Several processes starting at once (e.g. bot and cron) all end at head without errors."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(3) as pool:
        assert pool.map(db.upgrade, [database_url] * 3) == [db.head_revision()] * 3
    assert _tables(database_url) == set(Base.metadata.tables)
    results = []
    threads = [threading.Thread(target=lambda: results.append(db.upgrade(database_url))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [db.head_revision()] * 3  # and threads of one process


def _journal_mode_of_new_connection(path: str) -> str:
    engine = db.create_engine_for(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            return connection.exec_driver_sql("PRAGMA journal_mode").fetchone()[0]
    except Exception as exc:  # reported, not raised: the pool's other workers keep going
        return f"{type(exc).__name__}: {exc}"
    finally:
        engine.dispose()


def test_processes_opening_a_new_sqlite_database_at_once_all_connect_in_wal(tmp_path):
    """Each first connection switches the file to WAL; racing switches deadlock, and SQLite answers one of them
    "database is locked" at once (no busy wait). Before the retry, 4 of 240 such connections failed here."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(6) as pool:
        for round_ in range(40):
            modes = pool.map(_journal_mode_of_new_connection, [str(tmp_path / f"new-{round_}.db")] * 6)
            assert modes == ["wal"] * 6, modes
