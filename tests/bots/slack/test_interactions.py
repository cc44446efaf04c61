"""The "Suggest a better caption" button, the pre-filled modal, and the modal's submission."""

from __future__ import annotations

import json

from bots.core import Origin
from storage import corrections
from storage.db import session_scope
from tests.bots.slack.conftest import file_share
from tests.fakes.http_images import png_bytes
from tests.fakes.slack_api import TEAM


def post_image_and_get_caption_id(h) -> tuple[int, dict]:
    h.event(file_share([h.slack.add_file("F1", png_bytes(color=(200, 40, 40)))]))
    [post] = h.slack.wait_for("chat.postMessage")
    return int(post.args["blocks"][-1]["elements"][0]["value"]), post.args


def click(h, caption_id: int, user: str = "U_BOB"):
    payload = {
        "type": "block_actions", "team": {"id": TEAM}, "user": {"id": user}, "api_app_id": "A1",
        "trigger_id": "trig-1", "channel": {"id": "C1"}, "response_url": h.slack.response_url("btn"),
        "container": {"type": "message", "channel_id": "C1", "message_ts": "1700000001.000001"},
        "message": {"ts": "1700000001.000001", "thread_ts": "1700000000.000100"},
        "actions": [{"type": "button", "action_id": "suggest_caption", "block_id": "b1", "value": str(caption_id),
                     "action_ts": "1700000002.0"}],
    }
    return h.interaction(payload)


def submit(h, view: dict, text: str, user: str = "U_BOB"):
    state = {"values": {"correction": {"text": {"type": "plain_text_input", "value": text}}}}
    payload = {"type": "view_submission", "team": {"id": TEAM}, "user": {"id": user}, "api_app_id": "A1",
               "trigger_id": "trig-2", "view": {**view, "id": "V1", "state": state}}
    return h.interaction(payload)


def open_modal(h, caption_id: int) -> dict:
    assert click(h, caption_id).status_code == 200
    [opened] = h.slack.wait_for("views.open")
    assert opened.args["trigger_id"] == "trig-1"
    return opened.args["view"]


def stored_texts(bot_store, caption_id: int) -> list[str]:
    with session_scope(bot_store.engine) as session:
        return [c.text for c in corrections.corrections_for_caption(session, caption_id)]


def test_button_opens_prefilled_modal_and_submission_is_stored(make_slack, bot_store):
    h = make_slack()
    caption_id, _ = post_image_and_get_caption_id(h)
    view = open_modal(h, caption_id)
    field = view["blocks"][0]["element"]
    assert view["callback_id"] == "caption_correction" and field["initial_value"] == "a red picture"
    response = submit(h, view, "a red paper lantern on a wall")
    assert response.status_code == 200 and response.content in (b"", b"{}")  # closes the modal
    assert stored_texts(bot_store, caption_id) == ["a red paper lantern on a wall"]
    [thanks] = h.slack.wait_for("chat.postEphemeral")
    assert thanks.args["user"] == "U_BOB" and thanks.args["channel"] == "C1" and "Thanks" in thanks.args["text"]
    assert thanks.args["thread_ts"] == "1700000000.000100"


def test_refused_correction_shows_the_reason_on_the_field(make_slack, bot_store):
    h = make_slack()
    caption_id, _ = post_image_and_get_caption_id(h)
    view = open_modal(h, caption_id)
    response = submit(h, view, "hey <@U123> look")
    assert response.status_code == 200
    body = response.json()
    assert body["response_action"] == "errors" and "mentions" in body["errors"]["correction"]
    same = submit(h, view, "A red picture.").json()
    assert "same as the bot's caption" in same["errors"]["correction"]
    assert stored_texts(bot_store, caption_id) == []
    assert h.slack.calls("chat.postEphemeral") == []


def test_button_for_a_forgotten_caption_says_so(make_slack):
    h = make_slack()
    caption_id, _ = post_image_and_get_caption_id(h)
    h.core.forget_me(Origin("slack", TEAM, "C1", "U_ALICE"))
    click(h, caption_id)
    [answer] = h.slack.wait_for("respond")
    assert "no longer exists" in answer.args["text"] and answer.args["replace_original"] is False
    assert h.slack.calls("views.open") == []


def test_modal_metadata_carries_where_to_thank(make_slack):
    h = make_slack()
    caption_id, _ = post_image_and_get_caption_id(h)
    view = open_modal(h, caption_id)
    assert json.loads(view["private_metadata"]) == {"caption_id": caption_id, "channel": "C1",
                                                    "thread_ts": "1700000000.000100"}
