"""Storage fixtures: a migrated database (SQLite file and Postgres schema) and a blob directory."""

from __future__ import annotations

import pytest

from storage import db
from storage.blobs import LocalBlobStore


@pytest.fixture
def engine(database_url):
    """An engine on a fresh database migrated to head, on each backend."""
    db.upgrade(database_url)
    engine = db.create_engine_for(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def blobs(tmp_path):
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def session(engine):
    """One unit of work, committed at the end of the test (the caller-owns-the-session pattern)."""
    with db.session_scope(engine) as session:
        yield session
