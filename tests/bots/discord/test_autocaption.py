"""Auto-captioning over the gateway: the real discord.py client, the real core and store, a fake Discord."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from storage.blobs import sha256_of
from storage.models import Caption as CaptionRow
from storage.db import session_scope
from tests.bots.captioners import ColourCaptioner
from tests.bots.discord.harness import MAX_IMAGE_BYTES, person, png, running_bot
from tests.fakes.discord_server import user_payload, snowflake


@pytest.fixture(scope="module")
def bot(fake_discord, discord_db):
    with running_bot(fake_discord, discord_db[2], ColourCaptioner(version="colour-v1")) as runner:
        yield runner


def replies_to(message_id: str):
    return lambda r: (
        r.method == "POST" and r.path.endswith("/messages")
        and str((r.json or {}).get("message_reference", {}).get("message_id")) == message_id
    )


def test_connects_with_message_content_over_a_compressed_gateway(bot, fake_discord):
    assert fake_discord.identify["intents"] & (1 << 15)
    assert fake_discord.identify["token"] == fake_discord.token
    assert fake_discord.compressed_connections == 1  # discord.py asked for zlib-stream and decoded it


def test_image_post_gets_caption_reply_with_button_and_stored_bytes(bot, fake_discord, discord_db):
    engine, blobs, _ = discord_db
    image = png((200, 30, 30))
    attachment = fake_discord.add_attachment("photo.png", image, "image/png")
    posted = fake_discord.post_message(author=person(), content="look", attachments=[attachment])

    reply = fake_discord.wait_for(replies_to(posted["id"]))

    assert reply.path == f"/channels/{fake_discord.channel_id}/messages"
    assert reply.json["content"].startswith("a red picture")
    assert "colour-v1" in reply.json["content"]
    [row] = reply.json["components"]
    [button] = row["components"]
    assert button["type"] == 2 and button["label"] == "Suggest a better caption"
    caption_id = int(button["custom_id"].removeprefix("capbot:suggest:"))
    assert reply.json["allowed_mentions"]["parse"] == []
    # Bytes are stored (CDN URLs expire), under the caption's image.
    with session_scope(engine) as session:
        stored = session.execute(select(CaptionRow).where(CaptionRow.id == caption_id)).scalar_one()
        assert stored.image_sha256 == sha256_of(image)
        assert stored.text == "a red picture"
    assert blobs.get(sha256_of(image)) == image


def test_bot_and_non_image_and_oversized_posts_are_ignored(bot, fake_discord):
    since = time.monotonic()
    other_bot = user_payload(snowflake(), "otherbot", bot=True)
    from_bot = fake_discord.post_message(
        author=other_bot, attachments=[fake_discord.add_attachment("b.png", png((30, 200, 30)), "image/png")]
    )
    text_file = fake_discord.add_attachment("notes.txt", b"hello", "text/plain")
    non_image = fake_discord.post_message(author=person(), attachments=[text_file])
    huge = fake_discord.add_attachment("huge.png", png((1, 1, 1)), "image/png", size=MAX_IMAGE_BYTES + 1)
    oversized = fake_discord.post_message(author=person(), attachments=[huge])
    # A later image post is answered: by then the earlier events have been handled. discord.py starts the
    # handlers in gateway order, and each of these posts is dropped before its handler's first await.
    marker = fake_discord.post_message(
        author=person(), attachments=[fake_discord.add_attachment("m.png", png((30, 30, 200)), "image/png")]
    )
    fake_discord.wait_for(replies_to(marker["id"]), after=since)

    for ignored in (from_bot, non_image, oversized):
        assert fake_discord.requests_matching(replies_to(ignored["id"]), after=since) == []
    downloaded = set(fake_discord.cdn_hits)
    assert not any(a["url"].endswith(p) for a in (text_file, huge) for p in downloaded)
    assert not any(h.endswith("/b.png") for h in downloaded)


def test_own_reply_is_not_captioned(bot, fake_discord):
    since = time.monotonic()
    own = fake_discord.message_payload(
        author=fake_discord.bot_user, attachments=[fake_discord.add_attachment("own.png", png((200, 30, 30)), "image/png")]
    )
    fake_discord.dispatch("MESSAGE_CREATE", own)
    marker = fake_discord.post_message(
        author=person(), attachments=[fake_discord.add_attachment("m2.png", png((30, 30, 200)), "image/png")]
    )
    fake_discord.wait_for(replies_to(marker["id"]), after=since)
    assert fake_discord.requests_matching(replies_to(own["id"]), after=since) == []
