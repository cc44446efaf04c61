"""Consent, retention and a person's data through Slack: the first reply's notice, /caption privacy, settings,
training, retention and mydata, against the local Slack stand-in."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from bots import messages
from bots.image_hold import ImageHold
from bots.slack.listeners.commands import parse
from bots.store import IMAGE_GONE, SqlBotStore
from storage import feedback
from storage.blobs import LocalBlobStore
from storage.db import session_scope
from tests.bots.slack.conftest import file_share
from tests.bots.slack.test_interactions import open_modal, submit
from tests.fakes.http_images import png_bytes


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def bot_store(bot_engine, tmp_path, clock):
    """The real store, its memory hold (for workspaces keeping no images) on a clock the test moves."""
    return SqlBotStore(bot_engine, LocalBlobStore(tmp_path / "blobs"), hold=ImageHold(ttl_s=600, clock=clock))


ADMIN = {"id": "U_ADMIN", "is_admin": True}


def post_image(h, n: int, channel: str = "C1", user: str = "U_ALICE"):
    """Post the n-th image (a colour of its own) in `channel`; returns the caption's chat.postMessage call."""
    ts = f"1700000000.{n:06d}"
    photo = h.slack.add_file(f"F{n}", png_bytes(color=(30 * n % 256, 90, 160)))
    h.event(file_share([photo], ts=ts, channel=channel, user=user), event_id=f"Ev{n}")
    [post] = h.slack.wait_for("chat.postMessage", where=lambda c: c.args.get("thread_ts") == ts)
    return post


def caption_id_of(post) -> int:
    return int(post.args["blocks"][-1]["elements"][0]["value"])


def answers(h, count: int) -> list[str]:
    return [c.args["text"] for c in h.slack.wait_for("respond", count)]


@pytest.mark.parametrize("text, expected", [
    ("privacy", ("privacy", "")), ("Settings", ("settings", "")), ("mydata", ("mydata", "")),
    ("training on", ("training", "on")), ("training OFF", ("training", "off")), ("training maybe", ("help", "")),
    ("retention 30", ("retention", "30")), ("retention default", ("retention", "default")),
    ("retention", ("help", "")),
])
def test_parse_privacy_commands(text, expected):
    assert parse(text) == expected


def test_the_first_caption_in_a_channel_says_once_what_is_kept(make_slack):
    h = make_slack()
    first, second = post_image(h, 1), post_image(h, 2)
    elsewhere = post_image(h, 3, channel="C2")
    notice = messages.privacy_notice(h.core.store.community(_origin()))
    assert notice in first.args["text"] and "/caption optout" in notice and "/caption privacy" in notice
    assert {"type": "mrkdwn", "text": notice} in [e for b in first.args["blocks"] for e in b.get("elements", [])]
    assert notice not in second.args["text"]
    assert notice in elsewhere.args["text"]
    assert first.args["blocks"][-1]["type"] == "actions"  # the button stays last


def test_privacy_and_settings_answer_only_the_asker(make_slack):
    h = make_slack()
    h.slack.state.users.update({"U_ADMIN": ADMIN})
    h.command("off", user="U_ADMIN", channel="C2")
    h.slack.wait_for("respond", 1)
    h.command("privacy")
    privacy = h.slack.wait_for("respond", 2)[1].args
    h.command("settings")
    settings = h.slack.wait_for("respond", 3)[2].args
    assert privacy["response_type"] == settings["response_type"] == "ephemeral"
    assert "until someone asks me to forget them" in privacy["text"] and "may train" in privacy["text"]
    assert "`/caption mydata`" in privacy["text"] and "`/caption forget`" in privacy["text"]
    assert "on in this channel" in settings["text"] and "<#C2> off" in settings["text"]
    assert "the operator's default" in settings["text"]


def test_only_workspace_admins_decide_training_and_the_workspace_leaves_the_next_export(make_slack, bot_store):
    h = make_slack()
    h.slack.state.users.update({"U_ALICE": {"id": "U_ALICE"}, "U_ADMIN": ADMIN})
    view = open_modal(h, caption_id_of(post_image(h, 1)))
    assert submit(h, view, "a teal lantern on a pole").status_code == 200
    with session_scope(bot_store.engine) as session:
        assert len(feedback.export_corrections(session, bot_store.blobs)) == 1

    h.command("training off", user="U_ALICE")
    assert "Only workspace admins" in answers(h, 1)[0]
    h.command("training off", user="U_ADMIN")
    assert "the next retraining run leaves this community's images and corrections out" in answers(h, 2)[1]
    with session_scope(bot_store.engine) as session:
        assert feedback.export_corrections(session, bot_store.blobs) == []
    h.command("settings")
    assert "Nothing from here trains the model (an admin's choice)" in answers(h, 3)[2]

    h.command("training on", user="U_ADMIN")
    answers(h, 4)
    with session_scope(bot_store.engine) as session:
        assert len(feedback.export_corrections(session, bot_store.blobs)) == 1


def test_keep_no_images_writes_a_file_only_when_a_caption_is_corrected(make_slack, bot_store, clock):
    h = make_slack()
    h.slack.state.users.update({"U_ADMIN": ADMIN})
    h.command("retention 0", user="U_ADMIN")
    assert "not at all" in answers(h, 1)[0]

    corrected, expired = post_image(h, 1), post_image(h, 2)
    ids = caption_id_of(corrected), caption_id_of(expired)
    assert not any(bot_store.blobs.exists(_sha_of(bot_store, cid)) for cid in ids)

    view = open_modal(h, caption_id_of(corrected))
    assert submit(h, view, "a teal lantern on a pole").status_code == 200
    assert bot_store.blobs.exists(_sha_of(bot_store, caption_id_of(corrected)))

    clock.now += 601  # the held bytes of the other image are gone
    h.slack.state.calls.clear()
    view = open_modal(h, caption_id_of(expired))
    refused = submit(h, view, "a purple lantern on a pole")
    assert refused.json() == {"response_action": "errors", "errors": {"correction": IMAGE_GONE}}
    assert not bot_store.blobs.exists(_sha_of(bot_store, caption_id_of(expired)))


def _sha_of(store, caption_id: int) -> str:
    from storage import captions

    with session_scope(store.engine) as session:
        return captions.get_caption(session, caption_id).image_sha256


def test_retention_takes_days_or_default_from_admins(make_slack):
    h = make_slack()
    h.slack.state.users.update({"U_ADMIN": ADMIN, "U_ALICE": {"id": "U_ALICE"}})
    texts = []
    for n, (text, user) in enumerate([("retention soon", "U_ADMIN"), ("retention 14", "U_ALICE"),
                                      ("retention 14", "U_ADMIN"), ("retention default", "U_ADMIN")], start=1):
        h.command(text, user=user)  # one at a time: lazy listeners answer in any order
        texts.append(answers(h, n)[-1])
    assert texts[0] == messages.BAD_RETENTION
    assert "Only workspace admins" in texts[1]
    assert "kept for 14 days" in texts[2]
    assert "until someone asks me to forget them" in texts[3]


def test_mydata_sends_the_archive_to_the_users_direct_messages_only(make_slack):
    h = make_slack()
    post = post_image(h, 1, user="U_ALICE")
    post_image(h, 2, user="U_BOB")
    h.command("mydata", user="U_ALICE")
    [answer] = answers(h, 1)
    assert "direct messages" in answer and "1 caption, 0 corrections and 1 image" in answer
    [opened] = h.slack.wait_for("conversations.open")
    assert opened.args["users"] == "U_ALICE"
    [upload] = h.slack.state.uploads.values()
    assert upload["channel"] == "DU_ALICE" and upload["filename"] == "capbot-data-slack-U_ALICE.zip"
    with zipfile.ZipFile(io.BytesIO(upload["data"])) as archive:
        document = json.loads(archive.read("capbot-data.json"))
        [image] = [n for n in archive.namelist() if n.startswith("images/")]
    assert [c["id"] for c in document["captions"]] == [caption_id_of(post)]
    assert document["captions"][0]["image_file"] == image


def _origin():
    from bots.core import Origin
    from tests.fakes.slack_api import TEAM

    return Origin("slack", TEAM, "C1", "U_ALICE")
