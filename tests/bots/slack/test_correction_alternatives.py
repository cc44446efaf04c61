"""Slack: an unsure caption says so, and the correction modal offers the model's alternatives as radio buttons."""

from __future__ import annotations

from bots import messages
from inference.types import GenerationOptions
from tests.bots.guessing import GuessingCaptioner
from tests.bots.slack.conftest import file_share
from tests.bots.slack.test_interactions import click, stored_texts
from tests.fakes.http_images import png_bytes
from tests.fakes.slack_api import TEAM

BLUE, RED = png_bytes(color=(40, 60, 200)), png_bytes(color=(200, 40, 40))
OPTIONS = GenerationOptions(num_beams=3, num_alternatives=2)


def post(h, image: bytes):
    h.event(file_share([h.slack.add_file("F1", image)]))
    [message] = h.slack.wait_for("chat.postMessage")
    return int(message.args["blocks"][-1]["elements"][0]["value"]), message.args


def submit(h, view: dict, text: str, picked: str | None, user: str = "U_BOB"):
    values = {"correction": {"text": {"type": "plain_text_input", "value": text}}}
    if "alternative" in {b.get("block_id") for b in view["blocks"]}:
        selected = {"text": {"type": "plain_text", "text": "?"}, "value": picked} if picked is not None else None
        values["alternative"] = {"choice": {"type": "radio_buttons", "selected_option": selected}}
    payload = {"type": "view_submission", "team": {"id": TEAM}, "user": {"id": user}, "api_app_id": "A1",
               "trigger_id": "trig-2", "view": {**view, "id": "V1", "state": {"values": values}}}
    return h.interaction(payload)


def test_unsure_caption_says_so_and_sure_one_does_not(make_slack):
    h = make_slack(GuessingCaptioner(), options=OPTIONS, low_confidence=0.5)
    _, unsure = post(h, BLUE)
    assert unsure["blocks"][0]["text"]["text"] == "Maybe: a blue picture"
    assert unsure["blocks"][1]["elements"][0]["text"] == messages.UNSURE
    assert "20% sure" in unsure["text"]
    h.event(file_share([h.slack.add_file("F2", RED)], ts="1700000000.000200"), event_id="Ev2")
    _, sure = h.slack.wait_for("chat.postMessage", count=2)
    assert sure.args["blocks"][0]["text"]["text"] == "a red picture"
    assert messages.UNSURE not in sure.args["text"] and "90% sure" in sure.args["text"]


def test_modal_offers_alternatives_and_a_picked_one_is_stored(make_slack, bot_store):
    h = make_slack(GuessingCaptioner(), options=OPTIONS)
    caption_id, _ = post(h, BLUE)
    click(h, caption_id)
    [opened] = h.slack.wait_for("views.open")
    view = opened.args["view"]
    [choice] = [b for b in view["blocks"] if b.get("block_id") == "alternative"]
    assert choice["optional"] is True and choice["element"]["type"] == "radio_buttons"
    assert [o["text"]["text"] for o in choice["element"]["options"]] == ["a blue square", "a blue painting"]
    assert view["blocks"][0]["element"]["initial_value"] == "a blue picture"

    assert submit(h, view, "a blue picture", "1").content in (b"", b"{}")
    assert stored_texts(bot_store, caption_id) == ["a blue painting"]
    assert submit(h, view, "a blue flag on a pole", "0", user="U_CAROL").content in (b"", b"{}")  # typed text wins
    assert stored_texts(bot_store, caption_id) == ["a blue painting", "a blue flag on a pole"]


def test_caption_without_alternatives_has_no_choice_block(make_slack):
    h = make_slack(GuessingCaptioner(), options=GenerationOptions())
    caption_id, _ = post(h, BLUE)
    click(h, caption_id)
    [opened] = h.slack.wait_for("views.open")
    assert [b.get("block_id") for b in opened.args["view"]["blocks"]] == ["correction"]
