"""The whole path with the real local engine: a posted photo gets a caption written by the tiny model."""

from __future__ import annotations

import pytest

from bots import messages
from inference.captioner import LocalCaptioner
from storage import captions
from storage.db import session_scope
from tests.specs import EXACT_GREEDY
from tests.bots.discord.harness import BotRunner, make_core, person, png


@pytest.fixture(scope="module")
def bot(fake_discord, discord_db, tiny_model_dir):
    _, _, store = discord_db
    captioner = LocalCaptioner(tiny_model_dir, EXACT_GREEDY)
    core = make_core(captioner, store, workers=1)
    runner = BotRunner(fake_discord, core).start()
    yield runner, captioner
    runner.stop()
    core.close()


def test_posted_image_is_captioned_by_the_local_model(bot, fake_discord, discord_db):
    engine, _, _ = discord_db
    _, captioner = bot
    posted = fake_discord.post_message(
        author=person(), attachments=[fake_discord.add_attachment("real.png", png((90, 140, 200), (96, 64)), "image/png")]
    )
    reply = fake_discord.wait_for(
        lambda r: r.method == "POST" and r.path.endswith("/messages")
        and str((r.json or {}).get("message_reference", {}).get("message_id")) == posted["id"],
        timeout=60,
    )
    custom_id = reply.json["components"][0]["components"][0]["custom_id"]
    with session_scope(engine) as session:
        record = captions.get_caption(session, int(custom_id.rsplit(":", 1)[1]))
    assert record.model_version == captioner.model_version
    # The untrained model is far from sure of anything: the reply says so and invites a correction.
    assert record.confidence < 0.5
    caption, notice = reply.json["content"].split("\n-# ")  # the channel's first caption says what is kept
    assert caption == messages.caption_line(record.text, captioner.model_version, record.confidence, unsure=True)
    assert notice.startswith("About your data")
    assert reply.json["content"].startswith(f"Maybe: {record.text}\n{messages.UNSURE}")
