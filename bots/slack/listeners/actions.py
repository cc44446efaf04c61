"""The "Suggest a better caption" button: open a modal pre-filled with the caption, offering its alternatives."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bots import messages
from bots.slack.blocks import SUGGEST_ACTION, correction_modal
from bots.slack.deps import SlackDeps

log = logging.getLogger(__name__)


def ack_button(ack: Ack) -> None:
    """Acknowledge the click at once; the modal opens in the lazy listener (its trigger_id lasts 3 s)."""
    ack()


def register(app: App, deps: SlackDeps) -> None:
    def open_correction_modal(body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        caption_id = int(body["actions"][0]["value"])
        try:
            caption = deps.core.caption_info(caption_id)
        except Exception:
            log.exception("looking up a caption failed")
            respond(response_type="ephemeral", replace_original=False, text=messages.ERROR)
            return
        if caption is None:
            respond(response_type="ephemeral", replace_original=False, text=messages.CORRECTION_UNKNOWN)
            return
        message = body.get("message") or {}
        channel = (body.get("channel") or {}).get("id")
        thread_ts = message.get("thread_ts") or message.get("ts")
        view = correction_modal(caption_id, caption.text, channel, thread_ts, caption.alternatives)
        client.views_open(trigger_id=body["trigger_id"], view=view)

    app.action(SUGGEST_ACTION)(ack=ack_button, lazy=[open_correction_modal])
