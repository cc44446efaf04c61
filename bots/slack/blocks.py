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


def caption_message(reply: Reply) -> dict[str, Any]:
    """chat.postMessage / respond() arguments for a caption: text, model version, suggest button."""
    return {
        "text": messages.caption_line(reply.text, reply.model_version or "?"),
        "blocks": [
            {"type": "section", "text": {"type": "plain_text", "text": reply.text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"model `{reply.model_version}`"}]},
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


def correction_modal(caption_id: int, caption: str, channel: str | None, thread_ts: str | None) -> dict[str, Any]:
    """The modal opened by the button, pre-filled with the caption being corrected."""
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
                "label": {"type": "plain_text", "text": "Describe the picture"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": CORRECTION_INPUT,
                    "initial_value": caption,
                    "multiline": True,
                    "max_length": 1000,
                },
            }
        ],
    }


def read_modal(view: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(private metadata, submitted text) of a correction modal submission."""
    metadata = json.loads(view.get("private_metadata") or "{}")
    value = view["state"]["values"][CORRECTION_BLOCK][CORRECTION_INPUT].get("value") or ""
    return metadata, value
