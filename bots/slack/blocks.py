"""Block Kit for the bot's replies and the correction modal."""

from __future__ import annotations

import json
from typing import Any

from bots import messages
from bots.core import Reply

SUGGEST_ACTION = "suggest_caption"
CORRECTION_VIEW = "caption_correction"
CORRECTION_BLOCK = "correction"
CORRECTION_INPUT = "text"
ALTERNATIVE_BLOCK = "alternative"
ALTERNATIVE_INPUT = "choice"
MAX_OPTION_CHARS = 150  # Slack's limit on a radio button's text and value
MAX_OPTIONS = 10  # Slack's limit on radio buttons in one group


def caption_message(reply: Reply) -> dict[str, Any]:
    """chat.postMessage / respond() arguments for a caption: text (hedged when the model is unsure), model
    version and confidence, suggest button."""
    details = messages.caption_details(reply.model_version or "?", reply.confidence)
    unsure = [{"type": "context", "elements": [{"type": "plain_text", "text": messages.UNSURE}]}] if reply.unsure else []
    # The first caption in a channel says what is kept (bots.core); mrkdwn so its commands show as code.
    notice = [{"type": "context", "elements": [{"type": "mrkdwn", "text": reply.notice}]}] if reply.notice else []
    text = messages.caption_line(reply.text, reply.model_version or "?", reply.confidence, reply.unsure)
    return {
        "text": f"{text}\n{reply.notice}" if reply.notice else text,
        "blocks": [
            {"type": "section", "text": {"type": "plain_text", "text": messages.caption_body(reply.text, reply.unsure)}},
            *unsure,
            {"type": "context", "elements": [{"type": "plain_text", "text": details}]},
            *notice,
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": SUGGEST_ACTION,
                        "text": {"type": "plain_text", "text": messages.SUGGEST_BUTTON},
                        "value": str(reply.caption_id),
                    }
                ],
            },
        ],
    }


def correction_modal(caption_id: int, caption: str, channel: str | None, thread_ts: str | None,
                     alternatives: tuple[str, ...] = ()) -> dict[str, Any]:
    """The modal opened by the button: the caption being corrected in a text box, and the model's
    alternatives as radio buttons (optional; a changed text wins over a picked alternative)."""
    metadata = json.dumps({"caption_id": caption_id, "channel": channel, "thread_ts": thread_ts})
    return {
        "type": "modal",
        "callback_id": CORRECTION_VIEW,
        "private_metadata": metadata,
        "title": {"type": "plain_text", "text": "Better caption"},
        "submit": {"type": "plain_text", "text": "Save"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": CORRECTION_BLOCK,
                "label": {"type": "plain_text", "text": messages.CORRECTION_HINT},
                "element": {
                    "type": "plain_text_input",
                    "action_id": CORRECTION_INPUT,
                    "initial_value": caption,
                    "multiline": True,
                    "max_length": 1000,
                },
            },
            *_alternatives_block(alternatives),
        ],
    }


def _alternatives_block(alternatives: tuple[str, ...]) -> list[dict[str, Any]]:
    if not alternatives:
        return []
    options = [
        {"text": {"type": "plain_text", "text": _fit(text)}, "value": str(index)}
        for index, text in enumerate(alternatives[:MAX_OPTIONS])
    ]
    return [{
        "type": "input",
        "block_id": ALTERNATIVE_BLOCK,
        "optional": True,
        "label": {"type": "plain_text", "text": messages.PICK_ALTERNATIVE},
        "element": {"type": "radio_buttons", "action_id": ALTERNATIVE_INPUT, "options": options},
    }]


def _fit(text: str) -> str:
    return text if len(text) <= MAX_OPTION_CHARS else text[:MAX_OPTION_CHARS - 1] + "…"


def read_modal(view: dict[str, Any]) -> tuple[dict[str, Any], str, int | None]:
    """(private metadata, submitted text, index of the picked alternative or None) of a correction modal."""
    metadata = json.loads(view.get("private_metadata") or "{}")
    values = view["state"]["values"]
    text = values[CORRECTION_BLOCK][CORRECTION_INPUT].get("value") or ""
    picked = (values.get(ALTERNATIVE_BLOCK, {}).get(ALTERNATIVE_INPUT) or {}).get("selected_option") or {}
    value = str(picked.get("value", ""))
    return metadata, text, int(value) if value.isdigit() else None
