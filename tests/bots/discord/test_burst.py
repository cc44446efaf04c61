"""A burst of image posts through the gateway: every post is answered exactly once, with a caption or "busy"."""

from __future__ import annotations

import threading
from collections import Counter

from bots import messages
from tests.bots.captioners import ColourCaptioner
from tests.bots.discord.harness import BotRunner, make_core, person, png

POSTS = 50


def test_burst_of_posts_each_answered_once(fake_discord, discord_db):
    _, _, store = discord_db
    gate = threading.Event()  # holds the captioner so the queue fills up
    core = make_core(ColourCaptioner(version="burst-v1", gate=gate), store, workers=1, queue_size=5)
    runner = BotRunner(fake_discord, core).start()
    try:
        image = png((200, 40, 40))
        posted = [
            fake_discord.post_message(
                author=person(f"user{i}"), attachments=[fake_discord.add_attachment(f"b{i}.png", image, "image/png")]
            )["id"]
            for i in range(POSTS)
        ]
        ids = set(posted)

        def answered():
            return [
                str(r.json["message_reference"]["message_id"])
                for r in fake_discord.requests_matching(lambda r: r.method == "POST" and r.path.endswith("/messages"))
                if r.json and str(r.json.get("message_reference", {}).get("message_id")) in ids
            ]

        # Everything beyond one running job and five waiting ones is told "busy" while the captioner is held.
        fake_discord.wait_until(lambda: len(answered()) >= POSTS - 6, timeout=30)
        gate.set()
        fake_discord.wait_until(lambda: len(answered()) >= POSTS, timeout=30)
        # Marker: one more post, queued behind anything still in flight; the one worker takes jobs in order,
        # so once the marker is answered, a duplicate answer would have come already.
        marker = fake_discord.post_message(
            author=person("marker"), attachments=[fake_discord.add_attachment("m.png", image, "image/png")]
        )["id"]
        fake_discord.wait_for(lambda r: r.method == "POST" and r.path.endswith("/messages") and r.json
                              and str(r.json.get("message_reference", {}).get("message_id")) == marker)
        counts = Counter(answered())
        assert set(counts) == ids and set(counts.values()) == {1}

        replies = [
            r.json["content"]
            for r in fake_discord.requests_matching(lambda r: r.method == "POST" and r.path.endswith("/messages"))
            if r.json and str(r.json.get("message_reference", {}).get("message_id")) in ids
        ]
        captions = [c for c in replies if c.startswith("a red picture")]
        busy = [c for c in replies if c == messages.BUSY]
        # Five wait in the queue, plus the running job if the worker took it before the queue filled.
        assert 5 <= len(captions) <= 6 and len(captions) + len(busy) == POSTS
    finally:
        gate.set()
        runner.stop()
        core.close()
