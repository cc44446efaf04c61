"""`/caption [url | on | off | optout | optin | forget | privacy | settings | mydata | training on|off |
retention DAYS|default | help]`: acknowledged at once, worked on lazily."""

from __future__ import annotations

import re
from typing import Any, Callable

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bots import messages
from bots.core import Origin, Reply, ReplyKind
from bots.slack.deliver import respond_safely, respond_with, when_done
from bots.slack.deps import SlackDeps
from bots.slack.files import SlackFileRefused, image_files, loader, refusal_for
from bots.slack.permissions import can_manage_channel, is_workspace_admin
from storage.errors import UserError

HELP = (
    "*/caption* captions the most recent image in this channel.\n"
    "*/caption <url>* captions the image at a link.\n"
    "*/caption on* / *off* turns auto-captioning of posted images on or off here (admins and channel managers).\n"
    "*/caption optout* / *optin*: stop or resume auto-captions of your images and training on your corrections.\n"
    "*/caption privacy*: what I keep here, for how long, and what trains the model.\n"
    "*/caption settings*: this workspace's choices (auto-captioning per channel, training, image retention).\n"
    "*/caption mydata*: a copy of everything I store about you, sent only to you.\n"
    "*/caption forget*: delete your captions, corrections and images.\n"
    "*/caption training on* / *off* (workspace admins): may this workspace's images and corrections train the model?\n"
    "*/caption retention DAYS* / *default* (workspace admins): keep uncorrected images at most DAYS days (0: none)."
)
WORDS = {"on", "off", "optout", "optin", "forget", "privacy", "settings", "mydata"}
SETTINGS = {"training": {"on", "off"}, "retention": None}  # two-word commands (None: any argument, checked later)
HISTORY_LIMIT = 50  # messages searched by a bare /caption


def parse(text: str) -> tuple[str, str]:
    """('caption', url) | ('caption', '') | (word, '') for a keyword | (setting, value) | ('help', '')."""
    text = (text or "").strip()
    if text.lower() in WORDS:
        return text.lower(), ""
    words = text.lower().split()
    if len(words) == 2 and words[0] in SETTINGS and (SETTINGS[words[0]] is None or words[1] in SETTINGS[words[0]]):
        return words[0], words[1]
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
                return loader(files[0], deps, files_info, client.token)()
        raise SlackFileRefused(messages.NO_IMAGE, reason="no_image")

    return load


def retention_days(value: str) -> int | None:
    """`/caption retention VALUE`: 'default' -> None, a whole number of days -> it; anything else refused."""
    if value == "default":
        return None
    if not value.isdigit():
        raise UserError(messages.BAD_RETENTION, reason="bad_retention")
    return int(value)


def send_my_data(client: WebClient, origin: Origin, deps: SlackDeps) -> Reply:
    """`/caption mydata`: the user's archive as a file in their direct messages with the bot, seen by no one
    else; the slash command is answered privately that it is there."""
    export = deps.core.my_data(origin)
    summary = messages.data_summary(export.captions, export.corrections, export.images)
    dm = client.conversations_open(users=origin.user)["channel"]["id"]
    client.files_upload_v2(channel=dm, content=export.data, filename=export.filename, title="Your capbot data",
                           initial_comment=messages.MYDATA_SENT.format(summary=summary))
    return Reply(ReplyKind.DONE, messages.MYDATA_SENT_DM.format(summary=summary))


def register(app: App, deps: SlackDeps) -> None:
    def run_caption_command(command: dict[str, Any], client: WebClient, respond: Respond) -> None:
        action, arg = parse(command.get("text", ""))
        origin = Origin("slack", command.get("team_id"), command["channel_id"], command["user_id"])
        core = deps.core
        if action == "caption":
            image = None if arg else latest_image_loader(client, origin.channel, deps)
            when_done(core.caption_requested(origin, image=image, url=arg or None), lambda r: respond_with(respond, r))
        elif action in ("on", "off"):
            allowed = can_manage_channel(client, origin.user, origin.channel)
            respond_safely(respond, lambda: core.set_channel(origin, action == "on", allowed=allowed))
        elif action in ("optout", "optin"):
            respond_safely(respond, lambda: core.set_opt_out(origin, action == "optout"))
        elif action == "forget":
            respond_safely(respond, lambda: core.forget_me(origin))
        else:
            run_privacy_command(action, arg, origin, client, respond)

    def run_privacy_command(action: str, arg: str, origin: Origin, client: WebClient, respond: Respond) -> None:
        core = deps.core
        if action == "privacy":
            respond_safely(respond, lambda: core.privacy(origin))
        elif action == "settings":
            respond_safely(respond, lambda: core.community_settings(origin))
        elif action == "mydata":
            respond_safely(respond, lambda: send_my_data(client, origin, deps))
        elif action == "training":
            allowed = is_workspace_admin(client, origin.user)
            respond_safely(respond, lambda: core.set_training(origin, arg == "on", allowed=allowed))
        elif action == "retention":
            respond_safely(respond, lambda: core.set_retention(origin, retention_days(arg),
                                                              allowed=is_workspace_admin(client, origin.user)))

    app.command("/caption")(ack=ack_caption_command, lazy=[run_caption_command])
