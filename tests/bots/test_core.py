"""BotCore against the real storage layer (SQLite), the real fetcher and a local image server."""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest

from bots.core import BotCore, Origin, ReplyKind
from bots.fetch import AddressPolicy, FetchRefused, fetch_image_bytes
from storage import captions, corrections
from storage.db import session_scope
from tests.bots.captioners import BrokenCaptioner, ColourCaptioner
from tests.fakes.http_images import ImageServer, png_bytes

RED = png_bytes(color=(200, 40, 40))
BLUE = png_bytes(color=(40, 60, 200))
ALICE = Origin("slack", "T1", "C1", "U_ALICE", message_ref="1700000000.000100")
BOB = Origin("slack", "T1", "C1", "U_BOB")


def local_fetch(**kwargs):
    return partial(fetch_image_bytes, max_bytes=1_000_000, timeout_s=5, policy=AddressPolicy(**kwargs))


@pytest.fixture
def make_core(bot_store):
    cores = []

    def build(captioner=None, **kwargs) -> BotCore:
        kwargs.setdefault("fetch_url", local_fetch(allow_private=True))
        core = BotCore(captioner or ColourCaptioner(), bot_store, **kwargs)
        cores.append(core)
        return core

    yield build
    for core in cores:
        core.close()


def result(future):
    return future.result(timeout=10)


def test_image_posted_is_captioned_and_stored(make_core, bot_store):
    reply = result(make_core().image_posted(ALICE, RED))
    assert reply.kind is ReplyKind.CAPTION
    assert reply.text == "a red picture" and reply.model_version == "stub-v1"
    with session_scope(bot_store.engine) as session:
        stored = captions.get_caption(session, reply.caption_id)
    assert stored.text == "a red picture" and stored.user_id == "U_ALICE"
    assert stored.message_ref == ALICE.message_ref and stored.channel_id == "C1"
    assert bot_store.blobs.get(stored.image_sha256) == RED


def test_loader_runs_on_the_worker(make_core):
    caller = threading.get_ident()
    seen = []

    def load():
        seen.append(threading.get_ident())
        return BLUE

    reply = result(make_core().image_posted(ALICE, load))
    assert reply.text == "a blue picture"
    assert seen and seen[0] != caller


def test_channel_switch_needs_permission_and_controls_auto_captions(make_core):
    core = make_core()
    refused = core.set_channel(ALICE, False, allowed=False)
    assert refused.kind is ReplyKind.REFUSED and refused.reason == "forbidden"
    assert result(core.image_posted(ALICE, RED)).kind is ReplyKind.CAPTION
    assert core.set_channel(ALICE, False, allowed=True).kind is ReplyKind.DONE
    skipped = result(core.image_posted(ALICE, RED))
    assert skipped.silent and skipped.reason == "channel_off"
    assert result(core.caption_requested(ALICE, image=RED)).kind is ReplyKind.CAPTION  # explicit ask still works
    other_channel = Origin("slack", "T1", "C2", "U_ALICE")
    assert result(core.image_posted(other_channel, RED)).kind is ReplyKind.CAPTION
    core.set_channel(ALICE, True, allowed=True)
    assert result(core.image_posted(ALICE, RED)).kind is ReplyKind.CAPTION


def test_opted_out_users_are_not_auto_captioned(make_core):
    core = make_core()
    assert core.set_opt_out(ALICE).kind is ReplyKind.DONE
    assert result(core.image_posted(ALICE, RED)).reason == "opted_out"
    assert result(core.image_posted(BOB, RED)).kind is ReplyKind.CAPTION
    assert result(core.caption_requested(ALICE, image=RED)).kind is ReplyKind.CAPTION
    core.set_opt_out(ALICE, False)
    assert result(core.image_posted(ALICE, RED)).kind is ReplyKind.CAPTION


def test_correction_accepted_and_refused(make_core, bot_store):
    core = make_core()
    caption_id = result(core.image_posted(ALICE, RED)).caption_id
    assert core.caption_text(caption_id) == "a red picture"
    assert core.submit_correction(caption_id, BOB, "a red square on a white table").kind is ReplyKind.DONE
    same = core.submit_correction(caption_id, BOB, "A red picture.")
    assert same.kind is ReplyKind.REFUSED and same.reason == "same_as_caption" and same.text
    link = core.submit_correction(caption_id, BOB, "see https://example.com")
    assert link.reason == "link"
    missing = core.submit_correction(caption_id + 999, BOB, "a dog")
    assert missing.kind is ReplyKind.REFUSED and missing.reason == "unknown_caption"
    with session_scope(bot_store.engine) as session:
        texts = [c.text for c in corrections.corrections_for_caption(session, caption_id)]
    assert texts == ["a red square on a white table"]


def test_confirmation_is_stored_and_shares_the_correction_limit(make_core, bot_store):
    core = make_core(correction_rate_limit_per_minute=2)
    caption_id = result(core.image_posted(ALICE, RED)).caption_id
    done = core.confirm_caption(caption_id, BOB)
    assert done.kind is ReplyKind.DONE and "right" in done.text
    assert core.submit_correction(caption_id, BOB, "a red square on a white table").kind is ReplyKind.DONE
    limited = core.confirm_caption(caption_id, BOB)
    assert limited.kind is ReplyKind.BUSY and limited.reason == "rate_limited"
    missing = core.confirm_caption(caption_id + 999, ALICE)
    assert missing.kind is ReplyKind.REFUSED and missing.reason == "unknown_caption"
    with session_scope(bot_store.engine) as session:
        answers = [(c.kind, c.status) for c in corrections.corrections_for_caption(session, caption_id)]
    assert answers == [("confirmation", "overridden"), ("correction", "accepted")]


def test_caption_by_url_uses_the_safe_fetcher(make_core):
    with ImageServer() as server:
        server.state.image = BLUE
        ok = result(make_core().caption_requested(ALICE, url=server.url("/redirect/2")))
        assert ok.kind is ReplyKind.CAPTION and ok.text == "a blue picture"
        strict = make_core(fetch_url=local_fetch())  # the production policy
        refused = result(strict.caption_requested(ALICE, url=server.url("/image.png")))
        assert refused.kind is ReplyKind.REFUSED and refused.reason == "private_address"
        assert "loopback" in refused.text
        html = result(make_core().caption_requested(ALICE, url=server.url("/page.html")))
        assert html.reason == "not_image"


def test_nothing_to_caption(make_core):
    assert result(make_core().caption_requested(ALICE)).reason == "no_image"


def test_loader_refusal_becomes_the_reply(make_core):
    def load():
        raise FetchRefused("That file is 30.0 MB; the limit is 20.0 MB.", reason="too_large")

    reply = result(make_core().image_posted(ALICE, load))
    assert reply.kind is ReplyKind.REFUSED and reply.text.startswith("That file is 30.0 MB")


@pytest.mark.parametrize("data, reason", [(b"%PDF-1.4 not a picture", "not_image"), (RED[: len(RED) // 2], "truncated")],
                         ids=["pdf", "half-png"])
def test_a_file_the_intake_cannot_decode_is_refused_not_treated_as_a_bug(make_core, bot_store, caplog, data, reason):
    reply = result(make_core().image_posted(ALICE, data))
    assert reply.kind is ReplyKind.REFUSED and reply.reason == reason
    assert reply.text.startswith("I couldn't caption that image: the ")  # the intake's words, shown to the user
    assert not any(r.exc_info for r in caplog.records)  # a refusal, not a logged bug
    assert not bot_store.blobs.exists(hashlib.sha256(data).hexdigest())


def test_a_bug_is_answered_and_logged(make_core, caplog):
    reply = result(make_core(BrokenCaptioner()).image_posted(ALICE, RED))
    assert reply.kind is ReplyKind.ERROR and "went wrong" in reply.text
    assert any("caption job failed" in r.message and r.exc_info for r in caplog.records)


def test_per_user_rate_limit_with_injected_clock(make_core):
    now = [1000.0]
    core = make_core(rate_limit_per_minute=2, clock=lambda: now[0])
    assert [result(core.image_posted(ALICE, RED)).kind for _ in range(2)] == [ReplyKind.CAPTION] * 2
    limited = result(core.image_posted(ALICE, RED))
    assert limited.kind is ReplyKind.BUSY and limited.reason == "rate_limited" and "60 s" in limited.text
    assert result(core.image_posted(BOB, RED)).kind is ReplyKind.CAPTION  # per user
    now[0] += 61
    assert result(core.image_posted(ALICE, RED)).kind is ReplyKind.CAPTION


def test_burst_is_served_in_order_or_told_busy(make_core, bot_store):
    gate = threading.Event()
    captioner = ColourCaptioner(gate=gate)
    core = make_core(captioner, workers=1, queue_size=5, rate_limit_per_minute=100)
    origins = [Origin("slack", "T1", "C1", f"U{i}", message_ref=str(i)) for i in range(50)]
    futures = [core.image_posted(origins[0], RED)]
    deadline = time.monotonic() + 10
    while captioner.calls == 0 and time.monotonic() < deadline:  # the worker has taken the first job
        time.sleep(0.01)
    futures += [core.image_posted(origin, RED) for origin in origins[1:]]
    busy_now = [f for f in futures if f.done()]
    assert len(busy_now) == 44  # one running (held by the gate), five waiting, the rest told at once
    gate.set()
    replies = [result(f) for f in futures]
    kinds = [r.kind for r in replies]
    assert kinds.count(ReplyKind.CAPTION) == 6 and kinds.count(ReplyKind.BUSY) == 44
    served = [i for i, r in enumerate(replies) if r.kind is ReplyKind.CAPTION]
    assert served == list(range(6))  # first come, first served
    ids = [replies[i].caption_id for i in served]
    assert ids == sorted(ids) and len(set(ids)) == 6  # stored in order, once each
    assert all(r.text == "I'm busy captioning other images right now; please try again shortly." for r in replies[6:])


def test_concurrent_corrections_are_all_stored(make_core, bot_store):
    core = make_core()
    caption_id = result(core.image_posted(ALICE, RED)).caption_id
    users = [Origin("slack", "T1", "C1", f"U{i}") for i in range(16)]
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda o: core.submit_correction(caption_id, o, f"a red card held by {o.user}"), users))
    assert all(r.kind is ReplyKind.DONE for r in replies)
    with session_scope(bot_store.engine) as session:
        stored = {c.user_id for c in corrections.corrections_for_caption(session, caption_id)}
    assert stored == {o.user for o in users}


def test_events_are_claimed_once(make_core):
    core = make_core()
    assert core.mark_event_processed("slack", "Ev1") is True
    assert core.mark_event_processed("slack", "Ev1") is False
    assert core.mark_event_processed("discord", "Ev1") is True


def test_close_finishes_queued_work(bot_store):
    core = BotCore(ColourCaptioner(delay_s=0.05), bot_store, fetch_url=local_fetch())
    futures = [core.image_posted(Origin("slack", "T1", "C1", f"U{i}"), RED) for i in range(4)]
    core.close()
    assert all(f.done() and f.result().kind is ReplyKind.CAPTION for f in futures)
    assert result(core.image_posted(ALICE, RED)).kind is ReplyKind.BUSY  # closed: told, not dropped


def test_forget_me_deletes_the_users_data_only(make_core, bot_store):
    core = make_core()
    mine = result(core.image_posted(ALICE, RED)).caption_id
    shared = result(core.image_posted(BOB, BLUE)).caption_id
    core.submit_correction(shared, ALICE, "a blue square")
    core.submit_correction(shared, BOB, "a blue sky")
    reply = core.forget_me(ALICE)
    assert reply.kind is ReplyKind.DONE and "1 caption(s), 1 correction(s) and 1 image(s)" in reply.text
    assert core.caption_text(mine) is None
    assert core.caption_text(shared) == "a blue picture"
    with session_scope(bot_store.engine) as session:
        left = [c.user_id for c in corrections.corrections_for_caption(session, shared)]
    assert left == ["U_BOB"]
    assert not bot_store.blobs.exists(hashlib.sha256(RED).hexdigest())
    assert bot_store.blobs.exists(hashlib.sha256(BLUE).hexdigest())


def test_store_failure_before_queueing_is_answered(make_core, bot_store, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("database went away (simulated)")

    monkeypatch.setattr(bot_store, "auto_caption_enabled", broken)
    reply = result(make_core().image_posted(ALICE, RED))
    assert reply.kind is ReplyKind.ERROR and reply.reason == "internal"
