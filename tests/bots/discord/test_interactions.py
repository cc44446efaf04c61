"""Interactions: `/caption`, the suggest button, the correction form and the settings commands, over the gateway."""

from __future__ import annotations

import time

import pytest

from bots import messages
from storage import channels, corrections
from storage.db import session_scope
from tests.bots.captioners import ColourCaptioner
from tests.bots.discord.harness import callback_of, followup_of, person, png, running_bot
from tests.fakes.discord_server import (
    INTERACTION_COMPONENT,
    INTERACTION_MODAL_SUBMIT,
    MANAGE_CHANNELS,
    MEMBER_PERMISSIONS,
)

EPHEMERAL = 1 << 6


@pytest.fixture(scope="module")
def captioner():
    return ColourCaptioner(version="colour-v2")


@pytest.fixture(scope="module")
def bot(fake_discord, discord_db, captioner):
    with running_bot(fake_discord, discord_db[2], captioner) as runner:
        yield runner


def caption_image(fake, colour, user):
    attachment = fake.add_attachment("pic.png", png(colour), "image/png")
    return fake.slash_command(
        "caption", "image", [{"name": "attachment", "type": 11, "value": attachment["id"]}],
        attachments=[attachment], user=user,
    )


def test_commands_are_synced_with_context_menus(bot, fake_discord):
    [group] = [c for c in fake_discord.commands["global"] if c["name"] == "caption"]
    assert {o["name"] for o in group["options"]} == {"image", "on", "off", "optout", "optin", "forget", "privacy",
                                                     "settings", "training", "retention", "mydata"}
    menus = {c["name"] for c in fake_discord.commands["global"] if c["type"] == 3}
    assert menus == {"Caption image", "Suggest a better caption"}


def test_slash_caption_with_attachment_defers_then_follows_up(bot, fake_discord):
    sent = time.monotonic()
    interaction = caption_image(fake_discord, (40, 160, 60), person())

    ack = fake_discord.wait_for(callback_of(interaction), timeout=3)
    assert ack.json["type"] == 5 and ack.at - sent < 3
    followup = fake_discord.wait_for(followup_of(fake_discord, interaction))
    assert followup.json["content"].startswith("a green picture")
    assert "colour-v2" in followup.json["content"]
    [row] = followup.json["components"]
    assert row["components"][0]["custom_id"].startswith("capbot:suggest:")


def test_slow_captioner_does_not_delay_the_defer_or_the_heartbeat(bot, fake_discord, captioner):
    captioner.delay_s = 5.0
    try:
        sent = time.monotonic()
        interaction = caption_image(fake_discord, (200, 40, 40), person())
        ack = fake_discord.wait_for(callback_of(interaction), timeout=3)
        beats = fake_discord.heartbeats
        followup = fake_discord.wait_for(followup_of(fake_discord, interaction), timeout=15)
    finally:
        captioner.delay_s = 0.0
    assert ack.at - sent < 3.0  # Discord's deadline; the captioner alone takes 5 s
    assert followup.at - sent >= 5.0
    assert "a red picture" in followup.json["content"]
    # Heartbeats every 0.3 s kept flowing while the caption was being written.
    assert fake_discord.heartbeats - beats >= 5


def open_form(fake, user):
    """Caption an image, click the reply's button; returns (caption id, modal callback record)."""
    interaction = caption_image(fake, (40, 60, 200), user)
    followup = fake.wait_for(followup_of(fake, interaction))
    custom_id = followup.json["components"][0]["components"][0]["custom_id"]
    click = fake.interaction(
        INTERACTION_COMPONENT, {"custom_id": custom_id, "component_type": 2}, user=user, message=followup.answer
    )
    modal = fake.wait_for(callback_of(click), timeout=3)
    return int(custom_id.rsplit(":", 1)[1]), modal


def text_inputs(components):
    for component in components:
        if component["type"] == 4:
            yield component
        yield from text_inputs(component.get("components", []))
        if "component" in component:
            yield from text_inputs([component["component"]])


def submit_form(fake, modal, user, text):
    """Submit the modal the bot sent, with `text` in its text box."""
    [box] = text_inputs(modal.json["data"]["components"])
    data = {
        "custom_id": modal.json["data"]["custom_id"],
        "components": [{"type": 1, "components": [{"type": 4, "custom_id": box["custom_id"], "value": text}]}],
    }
    return fake.interaction(INTERACTION_MODAL_SUBMIT, data, user=user)


def test_button_opens_prefilled_form_and_submission_stores_correction(bot, fake_discord, discord_db):
    engine, _, _ = discord_db
    user = person("bob")
    caption_id, modal = open_form(fake_discord, user)
    assert modal.json["type"] == 9
    [box] = text_inputs(modal.json["data"]["components"])
    assert box["value"] == "a blue picture"

    submit = submit_form(fake_discord, modal, user, "a blue square on a plain background")
    ack = fake_discord.wait_for(callback_of(submit), timeout=3)
    assert ack.json["type"] == 5 and ack.json["data"]["flags"] & EPHEMERAL
    answer = fake_discord.wait_for(followup_of(fake_discord, submit))
    assert answer.json["content"] == messages.CORRECTION_THANKS
    with session_scope(engine) as session:
        [stored] = corrections.corrections_for_caption(session, caption_id)
    assert stored.text == "a blue square on a plain background"
    assert stored.user_id == user["id"] and stored.platform == "discord"


def test_refused_correction_shows_the_reason_and_stores_nothing(bot, fake_discord, discord_db):
    engine, _, _ = discord_db
    user = person("carol")
    caption_id, modal = open_form(fake_discord, user)
    submit = submit_form(fake_discord, modal, user, "see https://example.com/better")
    answer = fake_discord.wait_for(followup_of(fake_discord, submit))
    assert "links" in answer.json["content"]
    assert answer.json["flags"] & EPHEMERAL
    with session_scope(engine) as session:
        assert corrections.corrections_for_caption(session, caption_id) == []


def test_caption_on_needs_manage_channels(bot, fake_discord, discord_db):
    engine, _, _ = discord_db
    refused = fake_discord.slash_command("caption", "off", user=person(), permissions=MEMBER_PERMISSIONS)
    answer = fake_discord.wait_for(followup_of(fake_discord, refused))
    assert answer.json["content"] == messages.CHANNEL_FORBIDDEN
    with session_scope(engine) as session:
        assert channels.auto_caption_enabled(session, platform="discord", channel_id=fake_discord.channel_id, default=None) is None

    allowed = fake_discord.slash_command("caption", "off", user=person(), permissions=MEMBER_PERMISSIONS | MANAGE_CHANNELS)
    answer = fake_discord.wait_for(followup_of(fake_discord, allowed))
    assert answer.json["content"] == messages.CHANNEL_OFF
    with session_scope(engine) as session:
        assert channels.auto_caption_enabled(session, platform="discord", channel_id=fake_discord.channel_id, default=True) is False


def test_two_people_correcting_one_caption_are_both_stored(bot, fake_discord, discord_db):
    engine, _, _ = discord_db
    alice, bob = person("alice"), person("bob")
    caption_id, modal = open_form(fake_discord, alice)
    reply = next(m for m in fake_discord.requests_matching(lambda r: r.path.startswith("/webhooks/"))
                 if f"capbot:suggest:{caption_id}" in str(m.json))
    click = fake_discord.interaction(
        INTERACTION_COMPONENT, {"custom_id": f"capbot:suggest:{caption_id}", "component_type": 2},
        user=bob, message=reply.answer,
    )
    fake_discord.wait_for(callback_of(click), timeout=3)

    first = submit_form(fake_discord, modal, alice, "a blue tile seen from above")
    second = submit_form(fake_discord, modal, bob, "a plain blue rectangle")
    answers = [fake_discord.wait_for(followup_of(fake_discord, s)).json["content"] for s in (first, second)]

    assert answers == [messages.CORRECTION_THANKS] * 2
    with session_scope(engine) as session:
        stored = {c.user_id: c.text for c in corrections.corrections_for_caption(session, caption_id)}
    assert stored == {alice["id"]: "a blue tile seen from above", bob["id"]: "a plain blue rectangle"}
