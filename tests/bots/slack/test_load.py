"""Slack's 3-second deadline: acks never wait for a caption; and a burst of 50 image posts with corrections in flight."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from bots import messages
from storage import corrections
from storage.db import session_scope
from tests.bots.captioners import ColourCaptioner
from tests.bots.slack.conftest import file_share
from tests.bots.slack.test_interactions import open_modal, submit
from tests.fakes.http_images import ImageServer, png_bytes

RED = png_bytes(color=(200, 40, 40))


def test_acks_do_not_wait_for_the_caption(make_slack):
    """Slack retries anything not acknowledged within 3 s: acks must not depend on captioning at all.

    The captioner is held until both acks are in, so an ack that waited for its caption never arrives.
    """
    gate = threading.Event()
    h = make_slack(ColourCaptioner(gate=gate), workers=2)
    photo = h.slack.add_file("F1", RED)
    with ImageServer() as images, ThreadPoolExecutor(2) as pool:
        event_ack = pool.submit(h.event, file_share([photo]))
        command_ack = pool.submit(h.command, images.url("/image.png"))
        try:
            acks = [event_ack.result(timeout=20), command_ack.result(timeout=20)]  # TimeoutError: an ack waited
            assert [a.status_code for a in acks] == [200, 200]
            assert h.slack.calls("chat.postMessage") == []  # the captions are still being written
        finally:
            gate.set()  # never leave a request hanging on a failed assertion
        [post] = h.slack.wait_for("chat.postMessage", timeout=20)
        [answer] = h.slack.wait_for("respond", timeout=20)
    assert "a red picture" in post.args["text"] and "a red picture" in answer.args["text"]


def test_burst_of_50_posts_each_answered_once_and_no_correction_lost(make_slack, bot_store):
    gate = threading.Event()
    gate.set()
    h = make_slack(ColourCaptioner(gate=gate), workers=2, queue_size=10)
    # A caption to correct while the burst is going on.
    h.event(file_share([h.slack.add_file("F0", RED)], ts="1.0"), event_id="Ev0")
    caption_id = int(h.slack.wait_for("chat.postMessage")[0].args["blocks"][-1]["elements"][0]["value"])
    view = open_modal(h, caption_id)

    gate.clear()  # hold the captioner so the queue fills up
    photo = h.slack.add_file("F1", RED)
    posts = [(f"Ev{i}", f"{i}.5", f"U{i}") for i in range(1, 51)]

    def post(item):
        event_id, ts, user = item
        return h.event(file_share([photo], user=user, ts=ts), event_id=event_id).status_code

    def correct(i):
        return submit(h, view, f"a red kite number {i} in the sky", user=f"UC{i}").status_code

    with ThreadPoolExecutor(4) as pool:
        corrections_sent = [pool.submit(correct, i) for i in range(10)]
        statuses = list(pool.map(post, posts))
        assert all(f.result() == 200 for f in corrections_sent)
    assert statuses == [200] * 50
    gate.set()
    # Every post and correction was handled before its request was answered (jobs queued or "busy" sent);
    # closing the core waits until the queued jobs are done and their replies posted: nothing more can come.
    h.core.close()
    captions = [c.args for c in h.slack.calls("chat.postMessage")][1:]
    notices = [c.args for c in h.slack.calls("chat.postEphemeral") if c.args["text"] == messages.BUSY]
    thanks = [c for c in h.slack.calls("chat.postEphemeral") if "Thanks" in c.args["text"]]
    per_thread = sorted(a["thread_ts"] for a in captions + notices)
    assert per_thread == sorted(ts for _, ts, _ in posts)  # every post answered, exactly once
    # 2 workers held by the gate + 10 waiting = 12 served (fewer if a post beat a worker to the queue)
    assert 10 <= len(captions) <= 12 and len(captions) + len(notices) == 50
    assert len(thanks) == 10
    with session_scope(bot_store.engine) as session:
        stored = {c.user_id for c in corrections.corrections_for_caption(session, caption_id)}
    assert stored == {f"UC{i}" for i in range(10)}
