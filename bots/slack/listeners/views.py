"""Correction modal submissions: store the correction, or show storage's reason on the field."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bots import messages
from bots.core import Origin, ReplyKind
from bots.slack.blocks import CORRECTION_BLOCK, CORRECTION_VIEW, read_modal
from bots.slack.deps import SlackDeps

log = logging.getLogger(__name__)


def register(app: App, deps: SlackDeps) -> None:
    @app.view(CORRECTION_VIEW)
    def on_correction_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        # The verdict must travel in the ack (a field error keeps the modal open), so storing happens first:
        # one short database write, well inside Slack's 3 s.
        metadata, text, alternative = read_modal(view)
        user = body["user"]["id"]
        origin = Origin("slack", (body.get("team") or {}).get("id"), metadata.get("channel") or "", user)
        try:
            reply = deps.core.submit_correction(int(metadata["caption_id"]), origin, text, alternative)
        except Exception:
            log.exception("storing a correction failed")
            ack(response_action="errors", errors={CORRECTION_BLOCK: messages.ERROR})
            return
        if reply.kind is not ReplyKind.DONE:
            ack(response_action="errors", errors={CORRECTION_BLOCK: reply.text})
            return
        ack()
        if origin.channel:
            try:
                client.chat_postEphemeral(
                    channel=origin.channel, user=user, thread_ts=metadata.get("thread_ts"), text=reply.text
                )
            except SlackApiError as exc:  # e.g. the bot is not in that channel: the correction is stored anyway
                log.warning("could not thank the user", extra={"error": exc.response.get("error")})
