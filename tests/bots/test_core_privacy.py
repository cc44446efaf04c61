"""BotCore's privacy side against the real store: the one-time notice, community choices, images held in
memory where none are kept, and forgetting what is held."""

from __future__ import annotations

from functools import partial

import pytest

from bots.core import BotCore, Origin, ReplyKind
from bots.fetch import AddressPolicy, fetch_image_bytes
from bots.image_hold import ImageHold
from bots.store import SqlBotStore
from storage.blobs import LocalBlobStore, sha256_of
from tests.bots.captioners import ColourCaptioner
from tests.fakes.http_images import png_bytes

RED = png_bytes(color=(200, 40, 40))
ALICE = Origin("slack", "T1", "C1", "U_ALICE")
WEB = Origin("web", None, "web", "ip:127.0.0.1")


@pytest.fixture
def core(bot_engine, tmp_path):
    store = SqlBotStore(bot_engine, LocalBlobStore(tmp_path / "blobs"), image_retention_days=0,
                        training_consent_default=False, hold=ImageHold(ttl_s=600))
    fetch = partial(fetch_image_bytes, max_bytes=1_000_000, timeout_s=5, policy=AddressPolicy())
    core = BotCore(ColourCaptioner(), store, fetch_url=fetch)
    yield core
    core.close()


def test_notices_go_to_chat_channels_once_and_never_to_the_web(core):
    first = core.image_posted(ALICE, RED).result(10)
    again = core.image_posted(ALICE, RED).result(10)
    web = core.caption_requested(WEB, RED).result(10)
    assert first.notice and "not at all" in first.notice and "nothing from here trains the model" in first.notice
    assert again.notice is None and web.notice is None


def test_held_bytes_become_a_file_on_correction_and_go_with_forget(core):
    reply = core.image_posted(ALICE, RED).result(10)
    sha = sha256_of(RED)
    assert not core.store.blobs.exists(sha) and core.store.hold.get(sha) == RED
    assert core.submit_correction(reply.caption_id, Origin("slack", "T1", "C1", "U_BOB"), "a red lantern").kind \
        is ReplyKind.DONE
    assert core.store.blobs.get(sha) == RED

    other = png_bytes(color=(10, 200, 10))
    core.image_posted(ALICE, other).result(10)
    core.forget_me(ALICE)
    assert core.store.hold.get(sha256_of(other)) is None


def test_community_commands_need_a_community_and_an_admin(core):
    outside = Origin("discord", None, "DM1", "U1")
    assert core.set_training(outside, True, allowed=True).reason == "no_community"
    assert core.set_training(ALICE, True, allowed=False).reason == "forbidden"
    assert core.set_retention(ALICE, -3, allowed=True).reason == "bad_retention"
    assert core.set_retention(ALICE, 36_501, allowed=True).reason == "bad_retention"
    assert core.set_training(ALICE, True, allowed=True).kind is ReplyKind.DONE
    view = core.store.community(ALICE)
    assert view.training_consent and view.consent_chosen and view.retention_days == 0


def test_a_community_asking_for_more_than_the_operator_keeps_gets_the_operators_limit(bot_engine, tmp_path):
    store = SqlBotStore(bot_engine, LocalBlobStore(tmp_path / "b"), image_retention_days=30)
    core = BotCore(ColourCaptioner(), store, fetch_url=lambda url: b"")
    try:
        reply = core.set_retention(ALICE, 90, allowed=True)
        assert "kept for 30 days" in reply.text and "at most 30 days" in reply.text
        assert "you chose 90 days; the operator keeps at most 30" in core.community_settings(ALICE).text
    finally:
        core.close()


def test_the_hold_forgets_old_images_first_and_after_its_time():
    now = [0.0]
    hold = ImageHold(ttl_s=10, max_bytes=10, clock=lambda: now[0])
    hold.put("a", b"12345")
    hold.put("b", b"12345")
    hold.put("c", b"12")  # over 10 bytes: the oldest goes
    assert (hold.get("a"), hold.get("b"), hold.get("c")) == (None, b"12345", b"12")
    hold.put("big", b"x" * 11)  # larger than the whole hold: not held
    assert hold.get("big") is None and len(hold) == 2
    now[0] = 10
    assert len(hold) == 0
