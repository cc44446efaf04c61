"""`/caption` through the real endpoint: URLs (safe fetcher), the latest image, on/off, optout, forget."""

from __future__ import annotations

import pytest

from bots.fetch import AddressPolicy
from bots.slack.listeners.commands import parse
from tests.fakes.http_images import ImageServer, png_bytes

BLUE = png_bytes(color=(40, 60, 200))
GREEN = png_bytes(color=(40, 160, 60))


@pytest.fixture(scope="module")
def images():
    with ImageServer() as server:
        server.state.image = BLUE
        yield server


def test_caption_url(make_slack, images):
    h = make_slack()
    ack = h.command(images.url("/image.png"))
    assert ack.status_code == 200 and ack.json()["text"] == "Captioning…"
    [answer] = h.slack.wait_for("respond")
    assert answer.args["response_type"] == "in_channel"
    assert "a blue picture" in answer.args["text"]
    assert answer.args["blocks"][-1]["elements"][0]["action_id"] == "suggest_caption"


def test_caption_url_wrapped_by_slack(make_slack, images):
    h = make_slack()
    h.command(f"<{images.url('/image.png')}|image.png>")
    assert "a blue picture" in h.slack.wait_for("respond")[0].args["text"]


def test_private_address_url_is_refused_by_default(make_slack, images):
    h = make_slack(policy=AddressPolicy())  # the production policy
    before = len(images.state.requests)
    h.command(images.url("/image.png"))
    [answer] = h.slack.wait_for("respond")
    assert answer.args["response_type"] == "ephemeral"
    assert "127.0.0.1, a loopback address" in answer.args["text"]
    assert len(images.state.requests) == before  # refused before connecting


def test_typed_link_to_the_slack_host_is_refused_though_its_files_download(make_slack):
    # The configured Slack host (here on 127.0.0.1) may serve Slack's own files; a link a user types to it may not.
    h = make_slack(policy=AddressPolicy())  # the production policy
    photo = h.slack.add_file("F_NEW", GREEN)
    h.slack.state.history["C1"] = [{"type": "message", "ts": "2", "files": [photo]}]
    h.command("")
    [answer] = h.slack.wait_for("respond")
    assert "a green picture" in answer.args["text"]
    h.command(photo["url_private"])
    refusal = h.slack.wait_for("respond", count=2)[1]
    assert refusal.args["response_type"] == "ephemeral" and "127.0.0.1, a loopback address" in refusal.args["text"]
    assert len(h.slack.calls("download")) == 1  # the file, once; the typed link was refused before connecting


def test_url_that_is_not_an_image(make_slack, images):
    h = make_slack()
    h.command(images.url("/page.html"))
    assert "not an image" in h.slack.wait_for("respond")[0].args["text"]


def test_bare_caption_uses_the_latest_image_in_the_channel(make_slack):
    h = make_slack()
    old = h.slack.add_file("F_OLD", BLUE)
    new = h.slack.add_file("F_NEW", GREEN)
    doc = h.slack.add_file("F_DOC", b"text", mimetype="text/plain", name="notes.txt")
    h.slack.state.history["C1"] = [
        {"type": "message", "text": "no files here", "ts": "3"},
        {"type": "message", "files": [doc], "ts": "2.5"},
        {"type": "message", "files": [new], "ts": "2"},
        {"type": "message", "files": [old], "ts": "1"},
    ]
    h.command("")
    [answer] = h.slack.wait_for("respond")
    assert "a green picture" in answer.args["text"]
    assert [c.args["file"] for c in h.slack.calls("download")] == ["F_NEW"]


def test_bare_caption_without_any_image(make_slack):
    h = make_slack()
    h.command("")
    [answer] = h.slack.wait_for("respond")
    assert answer.args["response_type"] == "ephemeral" and "couldn't find an image" in answer.args["text"]


def test_on_off_needs_an_admin_or_the_channel_creator(make_slack):
    h = make_slack()
    h.slack.state.users.update({"U_ALICE": {"id": "U_ALICE"}, "U_ADMIN": {"id": "U_ADMIN", "is_admin": True},
                                "U_CREATOR": {"id": "U_CREATOR"}})
    h.slack.state.channels["C1"] = {"id": "C1", "creator": "U_CREATOR"}
    h.command("off", user="U_ALICE")
    assert "Only workspace admins and channel managers" in h.slack.wait_for("respond", 1)[0].args["text"]
    h.command("off", user="U_ADMIN")
    assert "now off" in h.slack.wait_for("respond", 2)[1].args["text"]
    h.command("on", user="U_CREATOR")
    assert "now on" in h.slack.wait_for("respond", 3)[2].args["text"]


def test_optout_and_optin(make_slack, bot_store):
    h = make_slack()
    h.command("optout")
    assert "opted out" in h.slack.wait_for("respond", 1)[0].args["text"]
    assert bot_store.is_opted_out("slack", "U_ALICE")
    h.command("optin")
    assert "opted in" in h.slack.wait_for("respond", 2)[1].args["text"]
    assert not bot_store.is_opted_out("slack", "U_ALICE")


def test_help_is_answered_in_the_ack(make_slack):
    h = make_slack()
    response = h.command("what is this")
    assert response.status_code == 200 and "/caption on" in response.json()["text"]


@pytest.mark.parametrize(
    "text, expected",
    [("", ("caption", "")), ("ON", ("on", "")), (" optout ", ("optout", "")), ("https://x.test/a.png", ("caption", "https://x.test/a.png")),
     ("<https://x.test/a.png|a.png>", ("caption", "https://x.test/a.png")), ("ftp://x.test/a", ("caption", "ftp://x.test/a")),
     ("please caption", ("help", "")), ("help", ("help", ""))],
)
def test_parse(text, expected):
    assert parse(text) == expected


def test_forget(make_slack):
    h = make_slack()
    h.slack.add_file("F1", BLUE)
    h.slack.state.history["C1"] = [{"type": "message", "files": [h.slack.state.files["F1"][0]], "ts": "1"}]
    h.command("")
    caption_id = int(h.slack.wait_for("respond", 1)[0].args["blocks"][-1]["elements"][0]["value"])
    h.command("forget")
    answer = h.slack.wait_for("respond", 2)[1]
    assert answer.args["response_type"] == "ephemeral" and "deleted 1 caption(s)" in answer.args["text"]
    assert h.core.caption_text(caption_id) is None


def test_bare_caption_where_the_bot_is_not_a_member(make_slack):
    h = make_slack()
    h.slack.state.not_member_of.add("C7")
    h.command("", channel="C7")
    [answer] = h.slack.wait_for("respond")
    assert answer.args["response_type"] == "ephemeral" and "/invite @capbot" in answer.args["text"]


def test_a_failing_database_is_still_answered(make_slack, bot_store, monkeypatch, caplog):
    h = make_slack()

    def broken(*args, **kwargs):
        raise RuntimeError("database went away (simulated)")

    monkeypatch.setattr(bot_store, "forget_user", broken)
    h.command("forget")
    [answer] = h.slack.wait_for("respond")
    assert answer.args["response_type"] == "ephemeral" and "went wrong" in answer.args["text"]
    assert any(r.message == "slash command failed" and r.exc_info for r in caplog.records)
