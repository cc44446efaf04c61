"""`/caption [url | on | off | optout | optin | forget | help]`: acknowledged at once, worked on lazily."""

from __future__ import annotations

import re
from typing import Any, Callable

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bots import messages
from bots.core import Origin
from bots.slack.deliver import respond_safely, respond_with, when_done
from bots.slack.deps import SlackDeps
from bots.slack.files import SlackFileRefused, image_files, loader, refusal_for
from bots.slack.permissions import can_manage_channel

HELP = (
    "*/caption* captions the most recent image in this channel.\n"
    "*/caption <url>* captions the image at a link.\n"
    "*/caption on* / *off* turns auto-captioning of posted images on or off here (admins and channel managers).\n"
    "*/caption optout* / *optin*: stop or resume auto-captions of your images and training on your corrections.\n"
    "*/caption forget*: delete your captions, corrections and images."
)
WORDS = {"on", "off", "optout", "optin", "forget"}
HISTORY_LIMIT = 50  # messages searched by a bare /caption


def parse(text: str) -> tuple[str, str]:
    """('caption', url) | ('caption', '') | (word, '') for a keyword | ('help', '')."""
    text = (text or "").strip()
    if text.lower() in WORDS:
        return text.lower(), ""
    if not text:
        return "caption", ""
    url = re.sub(r"^<([^|>]+)(\|[^>]*)?>$", r"\1", text)  # Slack may wrap links as <url|label>
    if " " not in url and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", url):
        return "caption", url
    return "help", ""


def ack_caption_command(ack: Ack, command: dict[str, Any]) -> None:
    """Acknowledge within Slack's 3 s; help needs nothing more."""
    action, _ = parse(command.get("text", ""))
    if action == "help":
        ack(response_type="ephemeral", text=HELP)
    elif action == "caption":
        ack(response_type="ephemeral", text="Captioning…")
    else:
        ack()


def latest_image_loader(client: WebClient, channel: str, deps: SlackDeps) -> Callable[[], bytes]:
    """Loader for a bare `/caption`: the newest image posted in the channel (conversations.history)."""

    def files_info(file_id: str) -> dict[str, Any]:
        return client.files_info(file=file_id)["file"]

    def load() -> bytes:
        try:
            history = client.conversations_history(channel=channel, limit=HISTORY_LIMIT)
        except SlackApiError as exc:
            raise refusal_for(exc) from exc
        for message in history.get("messages", []):  # newest first
            files = image_files(message)
            if files:
                return loader(files[0], deps, files_info)()
        raise SlackFileRefused(messages.NO_IMAGE, reason="no_image")

    return load


def register(app: App, deps: SlackDeps) -> None:
    def run_caption_command(command: dict[str, Any], client: WebClient, respond: Respond) -> None:
        action, url = parse(command.get("text", ""))
        origin = Origin("slack", command.get("team_id"), command["channel_id"], command["user_id"])
        core = deps.core
        if action == "caption":
            image = None if url else latest_image_loader(client, origin.channel, deps)
            when_done(core.caption_requested(origin, image=image, url=url or None), lambda r: respond_with(respond, r))
        elif action in ("on", "off"):
            allowed = can_manage_channel(client, origin.user, origin.channel)
            respond_safely(respond, lambda: core.set_channel(origin, action == "on", allowed=allowed))
        elif action in ("optout", "optin"):
            respond_safely(respond, lambda: core.set_opt_out(origin, action == "optout"))
        elif action == "forget":
            respond_safely(respond, lambda: core.forget_me(origin))

    app.command("/caption")(ack=ack_caption_command, lazy=[run_caption_command])
