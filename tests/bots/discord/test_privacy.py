"""Consent, retention and a person's data through Discord: the first reply's notice, /caption privacy,
settings, training, retention (Manage Server) and mydata, against the fake Discord."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from bots import messages
from storage import captions, feedback
from storage.db import session_scope
from tests.bots.captioners import ColourCaptioner
from tests.bots.discord.harness import followup_of, person, png, running_bot
from tests.fakes.discord_server import MANAGE_GUILD, MEMBER_PERMISSIONS

EPHEMERAL = 1 << 6
MANAGER = MEMBER_PERMISSIONS | MANAGE_GUILD


@pytest.fixture(scope="module")
def bot(fake_discord, discord_db):
    with running_bot(fake_discord, discord_db[2], ColourCaptioner(version="colour-p1")) as runner:
        yield runner


def reply_to(fake, message):
    return fake.wait_for(lambda r: r.method == "POST" and r.path.endswith("/messages")
                         and str((r.json or {}).get("message_reference", {}).get("message_id")) == message["id"])


def post_image(fake, colour, author=None):
    message = fake.post_message(author=author or person(),
                                attachments=[fake.add_attachment("p.png", png(colour), "image/png")])
    return message, reply_to(fake, message)


def command(fake, name, options=(), *, user=None, permissions=MEMBER_PERMISSIONS):
    interaction = fake.slash_command("caption", name, list(options), user=user or person(), permissions=permissions)
    return fake.wait_for(followup_of(fake, interaction))


def caption_id_of(reply) -> int:
    return int(reply.json["components"][0]["components"][0]["custom_id"].rsplit(":", 1)[1])


def test_the_first_caption_in_a_channel_says_once_what_is_kept(bot, fake_discord):
    _, first = post_image(fake_discord, (200, 30, 30))
    _, second = post_image(fake_discord, (30, 200, 30))
    caption, notice = first.json["content"].split("\n-# ")
    assert caption.startswith("a red picture") and notice.startswith("About your data")
    assert "`/caption optout`" in notice and "`/caption mydata`" in notice
    assert "About your data" not in second.json["content"]


def test_privacy_and_settings_answer_only_the_asker(bot, fake_discord):
    privacy = command(fake_discord, "privacy")
    settings = command(fake_discord, "settings")
    assert privacy.json["flags"] & EPHEMERAL and settings.json["flags"] & EPHEMERAL
    assert "What I keep here" in privacy.json["content"] and "`/caption forget`" in privacy.json["content"]
    assert "on in this channel" in settings.json["content"] and "the operator's default" in settings.json["content"]


def test_only_server_managers_decide_training_and_the_server_leaves_the_next_export(bot, fake_discord, discord_db):
    engine, blobs, store = discord_db
    alice = person("alice")
    _, reply = post_image(fake_discord, (30, 30, 200), author=alice)
    from bots.core import Origin

    origin = Origin("discord", fake_discord.guild_id, fake_discord.channel_id, "U-bob")
    assert bot.core.submit_correction(caption_id_of(reply), origin, "a navy kite on a beach").text == \
        messages.CORRECTION_THANKS
    refused = command(fake_discord, "training", [{"name": "state", "type": 3, "value": "off"}])
    assert refused.json["content"] == messages.COMMUNITY_FORBIDDEN
    with session_scope(engine) as session:
        assert len(feedback.export_corrections(session, blobs)) == 1

    done = command(fake_discord, "training", [{"name": "state", "type": 3, "value": "off"}], permissions=MANAGER)
    assert "leaves this community's images and corrections out" in done.json["content"]
    with session_scope(engine) as session:
        assert feedback.export_corrections(session, blobs) == []
    assert "Nothing from here trains the model" in command(fake_discord, "settings").json["content"]
    command(fake_discord, "training", [{"name": "state", "type": 3, "value": "on"}], permissions=MANAGER)


def test_a_server_keeping_no_images_writes_none(bot, fake_discord, discord_db):
    engine, blobs, _ = discord_db
    done = command(fake_discord, "retention", [{"name": "days", "type": 4, "value": 0}], permissions=MANAGER)
    assert "not at all" in done.json["content"]
    _, reply = post_image(fake_discord, (120, 20, 160))
    with session_scope(engine) as session:
        record = captions.get_caption(session, caption_id_of(reply))
    assert not blobs.exists(record.image_sha256)
    back = command(fake_discord, "retention", permissions=MANAGER)  # no days: the operator's default again
    assert "until someone asks me to forget them" in back.json["content"]


def test_mydata_is_an_ephemeral_file_for_the_asker_alone(bot, fake_discord):
    carol = person("carol")
    _, reply = post_image(fake_discord, (250, 200, 10), author=carol)
    answer = command(fake_discord, "mydata", user=carol)
    assert answer.json["flags"] & EPHEMERAL and "1 caption, 0 corrections and 1 image" in answer.json["content"]
    [(_, data)] = answer.files.items()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        document = json.loads(archive.read("capbot-data.json"))
        assert any(name.startswith("images/") for name in archive.namelist())
    assert [c["id"] for c in document["captions"]] == [caption_id_of(reply)]
    assert answer.json["attachments"][0]["filename"] == f"capbot-data-discord-{carol['id']}.zip"
