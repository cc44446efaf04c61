"""Image posts: `message` events with subtype `file_share` (plain `@app.message` skips file-only posts)."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bots.core import Origin
from bots.slack.deliver import post_in_thread, when_done
from bots.slack.deps import SlackDeps
from bots.slack.files import image_files, loader

log = logging.getLogger(__name__)


def event_key(body: dict[str, Any]) -> str:
    """The de-duplication key of an Events API delivery: a retry carries the same event id."""
    return f"{body.get('team_id', '')}:{body['event_id']}"


def register(app: App, deps: SlackDeps) -> None:
    @app.event({"type": "message", "subtype": "file_share"})
    def on_file_share(body: dict[str, Any], event: dict[str, Any], client: WebClient) -> None:
        # Runs before Slack's ack is sent (process_before_response): claim + enqueue only; the download and
        # the captioning happen on the core's workers, and the reply is posted when they finish.
        files = image_files(event)
        if not files or event.get("bot_id"):
            return
        if not deps.core.mark_event_processed("slack", event_key(body)):
            log.info("duplicate delivery ignored", extra={"event_id": body.get("event_id")})
            return
        origin = Origin("slack", body.get("team_id"), event["channel"], event.get("user", ""), message_ref=event["ts"])
        thread_ts = event.get("thread_ts") or event["ts"]

        def files_info(file_id: str) -> dict[str, Any]:
            return client.files_info(file=file_id)["file"]

        for file in files:
            future = deps.core.image_posted(origin, loader(file, deps, files_info, client.token))
            when_done(future, lambda reply: post_in_thread(client, origin.channel, thread_ts, origin.user, reply))

    @app.event("message")
    def on_other_message() -> None:
        """Other messages in channels the bot is in: acknowledged so Slack does not retry them."""
