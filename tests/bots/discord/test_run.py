"""Starting and stopping: intents, the Message Content fallback, a bad token, buttons surviving a restart."""

from __future__ import annotations

import logging
import time

import pytest

from bots.discord import DiscordLoginError
from bots.fetch import AddressPolicy
from tests.bots.captioners import ColourCaptioner
from tests.bots.discord.harness import BotRunner, make_core, person, png
from bots import messages
from storage import corrections
from storage.db import session_scope
from tests.fakes.discord_server import INTERACTION_COMPONENT, INTERACTION_MODAL_SUBMIT, MESSAGE_CONTENT_INTENT, FakeDiscord
from tests.fakes.ports import free_port
from bots.connection import Backoff, ConnectionTracker


@pytest.fixture
def fake():
    fake = FakeDiscord().start()
    yield fake
    fake.stop()
    assert fake.unrouted() == []


@pytest.fixture(scope="module")
def core(discord_db):
    _, _, store = discord_db
    core = make_core(ColourCaptioner(version="colour-v4"), store)
    yield core
    core.close()


def replies_to(message_id):
    return lambda r: (
        r.method == "POST" and r.path.endswith("/messages")
        and str((r.json or {}).get("message_reference", {}).get("message_id")) == message_id
    )


def commands_still_work(fake):
    attachment = fake.add_attachment("c.png", png((40, 160, 60)), "image/png")
    interaction = fake.slash_command(
        "caption", "image", [{"name": "attachment", "type": 11, "value": attachment["id"]}],
        attachments=[attachment], user=person(),
    )
    followup = fake.wait_for(lambda r: r.path == f"/webhooks/{fake.app_id}/{interaction['token']}")
    return followup.json["content"].startswith("a green picture")


def image_posts_are_ignored(fake):
    since = time.monotonic()
    posted = fake.post_message(author=person(), attachments=[fake.add_attachment("i.png", png((9, 9, 9)), "image/png")])
    assert commands_still_work(fake)  # answered after the post was handled
    return fake.requests_matching(replies_to(posted["id"]), after=since) == []


def test_refused_message_content_intent_falls_back_to_commands(fake, core, caplog):
    fake.message_content_granted = False
    caplog.set_level(logging.WARNING, logger="bots.discord")
    runner = BotRunner(fake, core).start()
    try:
        assert not fake.identify["intents"] & MESSAGE_CONTENT_INTENT
        assert image_posts_are_ignored(fake)
    finally:
        runner.stop()
    assert any("refused the Message Content intent" in r.getMessage() for r in caplog.records)


def test_message_content_off_in_settings_runs_commands_only(fake, core, caplog):
    caplog.set_level(logging.WARNING, logger="bots.discord")
    runner = BotRunner(fake, core, message_content=False).start()
    try:
        assert not fake.identify["intents"] & MESSAGE_CONTENT_INTENT
        assert image_posts_are_ignored(fake)
    finally:
        runner.stop()
    assert any("commands only" in r.getMessage() for r in caplog.records)


def test_bad_token_is_a_user_error(fake, core):
    runner = BotRunner(fake, core, token="not-the-token")
    with pytest.raises(DiscordLoginError, match="rejected the bot token"):
        runner.start()
    runner.stop()


def test_an_unreachable_discord_is_retried_with_backoff_until_it_answers(core):
    """Discord down when the bot starts (the load run: the bot stopped for good), then up."""
    later = FakeDiscord(port=free_port())  # not started: nothing listens there yet
    tracker = ConnectionTracker("discord")
    runner = BotRunner(later, core, tracker=tracker, backoff=Backoff(0.2, 1.0))
    runner._thread.start()
    try:
        wait_until(lambda: tracker.state().failures >= 2, "two failed attempts")
        down = tracker.state()
        assert down.state == "retrying" and "cannot reach Discord" in down.detail and runner.error is None
        later.start()
        wait_until(lambda: tracker.state().connected, "the bot to connect")
        assert later.sessions == 1 and commands_still_work(later)
    finally:
        runner.stop()
        later.stop()
    assert runner.error is None and tracker.state().state == "stopped"


def wait_until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_suggest_button_and_open_form_work_after_a_restart(fake, core, discord_db):
    user = person()
    with BotRunner(fake, core).start():
        posted = fake.post_message(author=person(), attachments=[fake.add_attachment("p.png", png((200, 40, 40)), "image/png")])
        reply = fake.wait_for(replies_to(posted["id"]))
    custom_id = reply.json["components"][0]["components"][0]["custom_id"]

    with BotRunner(fake, core).start(sessions=2):
        click = fake.interaction(INTERACTION_COMPONENT, {"custom_id": custom_id, "component_type": 2}, user=user, message=reply.answer)
        modal = fake.wait_for(lambda r: r.path == f"/interactions/{click['id']}/{click['token']}/callback", timeout=3)
    assert modal.json["type"] == 9 and "a red picture" in str(modal.json["data"])

    # The form was opened with the previous process; its submission still lands.
    with BotRunner(fake, core).start(sessions=3):
        data = {
            "custom_id": modal.json["data"]["custom_id"],
            "components": [{"type": 1, "components": [
                {"type": 4, "custom_id": "capbot:correction_text", "value": "a red card on a table"}]}],
        }
        submit = fake.interaction(INTERACTION_MODAL_SUBMIT, data, user=user)
        answer = fake.wait_for(lambda r: r.path == f"/webhooks/{fake.app_id}/{submit['token']}")
    assert answer.json["content"] == messages.CORRECTION_THANKS
    caption_id = int(custom_id.rsplit(":", 1)[1])
    with session_scope(discord_db[0]) as session:
        [stored] = corrections.corrections_for_caption(session, caption_id)
    assert stored.text == "a red card on a table"


def test_caption_by_url_fetches_the_image(fake, discord_db):
    _, _, store = discord_db
    # The fake's CDN is on 127.0.0.1, which the fetcher refuses unless told otherwise.
    core = make_core(ColourCaptioner(version="colour-v5"), store, policy=AddressPolicy(allow_private=True))
    try:
        attachment = fake.add_attachment("linked.png", png((40, 60, 200)), "image/png")
        with BotRunner(fake, core).start():
            interaction = fake.slash_command("caption", "image", [{"name": "url", "type": 3, "value": attachment["url"]}], user=person())
            followup = fake.wait_for(lambda r: r.path == f"/webhooks/{fake.app_id}/{interaction['token']}")
    finally:
        core.close()
    assert followup.json["content"].startswith("a blue picture")
    assert any(hit.endswith("/linked.png") for hit in fake.cdn_hits)
