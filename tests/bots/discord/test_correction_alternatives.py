"""Discord: an unsure caption says so, and the correction form offers the model's alternatives in a drop-down."""

from __future__ import annotations

import pytest

from bots import messages
from inference.types import GenerationOptions
from storage import corrections
from storage.db import session_scope
from tests.bots.discord.harness import callback_of, followup_of, person, running_bot
from tests.bots.discord.test_interactions import caption_image, text_inputs
from tests.bots.guessing import GuessingCaptioner
from tests.fakes.discord_server import INTERACTION_COMPONENT, INTERACTION_MODAL_SUBMIT

STRING_SELECT, LABEL = 3, 18


@pytest.fixture(scope="module")
def bot(fake_discord, discord_db):
    options = GenerationOptions(num_beams=3, num_alternatives=2)
    with running_bot(fake_discord, discord_db[2], GuessingCaptioner(version="guess-v1"), options=options,
                     low_confidence=0.5) as runner:
        yield runner


def selects(components):
    for component in components:
        if component["type"] == STRING_SELECT:
            yield component
        yield from selects(component.get("components", []))
        if "component" in component:
            yield from selects([component["component"]])


def open_form(fake, user, colour=(40, 60, 200)):
    followup = fake.wait_for(followup_of(fake, caption_image(fake, colour, user)))
    custom_id = followup.json["components"][0]["components"][0]["custom_id"]
    click = fake.interaction(INTERACTION_COMPONENT, {"custom_id": custom_id, "component_type": 2}, user=user,
                             message=followup.answer)
    return int(custom_id.rsplit(":", 1)[1]), followup, fake.wait_for(callback_of(click), timeout=3)


def submit(fake, modal, user, text, picked):
    [box] = text_inputs(modal.json["data"]["components"])
    [choice] = selects(modal.json["data"]["components"])
    data = {"custom_id": modal.json["data"]["custom_id"], "components": [
        {"type": 1, "components": [{"type": 4, "custom_id": box["custom_id"], "value": text}]},
        {"type": LABEL, "component": {"type": STRING_SELECT, "custom_id": choice["custom_id"], "values": picked}},
    ]}
    return fake.interaction(INTERACTION_MODAL_SUBMIT, data, user=user)


def test_unsure_caption_says_so(bot, fake_discord):
    unsure = fake_discord.wait_for(followup_of(fake_discord, caption_image(fake_discord, (40, 60, 200), person())))
    caption = unsure.json["content"].split("\n-# ")[0]  # without the notice the channel's first caption carries
    assert caption == f"Maybe: a blue picture\n{messages.UNSURE}\n_model guess-v1 · 20% sure_"
    sure = fake_discord.wait_for(followup_of(fake_discord, caption_image(fake_discord, (200, 40, 40), person())))
    assert sure.json["content"] == "a red picture\n_model guess-v1 · 90% sure_"


def test_form_offers_alternatives_and_a_picked_one_is_stored(bot, fake_discord, discord_db):
    engine, _, _ = discord_db
    alice, bob = person("alice"), person("bob")
    caption_id, _, modal = open_form(fake_discord, alice)
    [choice] = selects(modal.json["data"]["components"])
    assert [o["label"] for o in choice["options"]] == ["a blue square", "a blue painting"]
    assert choice.get("required") is False

    answers = []
    for user, text, picked in [(alice, "a blue picture", ["1"]), (bob, "a navy blue flag", ["0"])]:
        answers.append(fake_discord.wait_for(followup_of(fake_discord, submit(fake_discord, modal, user, text, picked))))
    assert [a.json["content"] for a in answers] == [messages.CORRECTION_THANKS] * 2
    with session_scope(engine) as session:
        stored = {c.user_id: c.text for c in corrections.corrections_for_caption(session, caption_id)}
    assert stored == {alice["id"]: "a blue painting", bob["id"]: "a navy blue flag"}  # typed text wins over a pick
