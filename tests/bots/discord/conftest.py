"""Module-scoped fixtures: one fake Discord, one database and one connected bot per test module."""

from __future__ import annotations

import pytest

from bots.store import SqlBotStore
from storage import db
from storage.blobs import LocalBlobStore
from tests.fakes.discord_server import FakeDiscord


@pytest.fixture(scope="module")
def discord_db(tmp_path_factory):
    """A migrated SQLite database and blob store shared by one module's tests: (engine, blobs, store)."""
    root = tmp_path_factory.mktemp("discord-db")
    url = f"sqlite:///{root / 'capbot.db'}"
    db.upgrade(url)
    engine = db.create_engine_for(url)
    blobs = LocalBlobStore(root / "blobs")
    yield engine, blobs, SqlBotStore(engine, blobs)
    engine.dispose()


@pytest.fixture(scope="module")
def fake_discord():
    """A fake Discord with fast heartbeats (so a blocked event loop would show)."""
    fake = FakeDiscord(heartbeat_interval_ms=300).start()
    yield fake
    fake.stop()
    assert fake.unrouted() == []
