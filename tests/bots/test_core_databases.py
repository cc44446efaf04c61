"""The core's store on both databases (SQLite file and PostgreSQL): one pass through every operation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from bots.core import BotCore, Origin, ReplyKind
from bots.store import SqlBotStore
from storage import db
from storage.blobs import LocalBlobStore
from tests.bots.captioners import ColourCaptioner
from tests.fakes.http_images import png_bytes

ALICE = Origin("discord", "G1", "C9", "alice", message_ref="m1")
BOB = Origin("discord", "G1", "C9", "bob")


@pytest.fixture
def core(database_url, tmp_path):
    db.upgrade(database_url)
    engine = db.create_engine_for(database_url)
    core = BotCore(ColourCaptioner(), SqlBotStore(engine, LocalBlobStore(tmp_path / "blobs")), fetch_url=lambda u: b"",
                   workers=2)
    yield core
    core.close()
    engine.dispose()


def test_every_operation(core):
    caption = core.image_posted(ALICE, png_bytes(color=(40, 160, 60))).result(timeout=10)
    assert caption.kind is ReplyKind.CAPTION and core.caption_text(caption.caption_id) == "a green picture"
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda _: core.mark_event_processed("discord", "dup-1"), range(8)))
        corrections = list(pool.map(lambda i: core.submit_correction(caption.caption_id, Origin("discord", "G1", "C9", f"u{i}"),
                                                                   f"a green field number {i}"), range(8)))
    assert claims.count(True) == 1
    assert all(r.kind is ReplyKind.DONE for r in corrections)
    assert core.submit_correction(caption.caption_id, BOB, "").reason == "empty"
    core.set_channel(ALICE, False, allowed=True)
    assert core.image_posted(BOB, png_bytes()).result(timeout=10).reason == "channel_off"
    core.set_channel(ALICE, True, allowed=True)
    core.set_opt_out(BOB)
    assert core.image_posted(BOB, png_bytes()).result(timeout=10).reason == "opted_out"
    assert "1 caption(s)" in core.forget_me(ALICE).text
    assert core.caption_text(caption.caption_id) is None
