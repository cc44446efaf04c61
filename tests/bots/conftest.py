"""Fixtures for bot tests: a migrated SQLite database with the real storage layer behind `SqlBotStore`."""

from __future__ import annotations

import pytest

from bots.store import SqlBotStore
from storage import db
from storage.blobs import LocalBlobStore


@pytest.fixture
def bot_engine(tmp_path):
    """An engine on a fresh SQLite file migrated to head."""
    url = f"sqlite:///{tmp_path / 'bots.db'}"
    db.upgrade(url)
    engine = db.create_engine_for(url)
    yield engine
    engine.dispose()


@pytest.fixture
def bot_store(bot_engine, tmp_path):
    """The real store the bots use, on that database and a blob directory."""
    return SqlBotStore(bot_engine, LocalBlobStore(tmp_path / "blobs"))
