"""Slack files: which ones are images, and downloading them with the bot token under a size cap."""

from __future__ import annotations

from typing import Any, Callable

from slack_sdk.errors import SlackApiError

from bots.fetch import FetchRefused, fetch_image_bytes
from bots.slack.deps import SlackDeps
from storage.errors import UserError


class SlackFileRefused(UserError):
    """A Slack file we cannot caption; the message says why."""


_API_ERRORS = {
    "not_in_channel": "I can't read this conversation: invite me first with `/invite @capbot`.",
    "channel_not_found": "I can't read this conversation: invite me first with `/invite @capbot`.",
    "file_not_found": "That file is gone (deleted, or not shared with me).",
    "file_deleted": "That file is gone (deleted, or not shared with me).",
    "missing_scope": "I'm missing a Slack permission for that; an admin should reinstall me from the manifest.",
}


def refusal_for(exc: SlackApiError) -> SlackFileRefused:
    """A user-facing refusal for a Web API error met while fetching an image; unknown errors stay errors."""
    code = str(exc.response.get("error", ""))
    if code not in _API_ERRORS:
        raise exc
    return SlackFileRefused(_API_ERRORS[code], reason=code)


def is_image(file: dict[str, Any]) -> bool:
    """True for files Slack labels as images (by MIME type)."""
    return str(file.get("mimetype", "")).startswith("image/")


def image_files(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The image files attached to a message event, in order."""
    return [f for f in event.get("files") or [] if is_image(f)]


def check_size(file: dict[str, Any], max_bytes: int) -> None:
    """Refuse before downloading when Slack's metadata says the file is over the cap."""
    size = int(file.get("size") or 0)
    if size > max_bytes:
        raise SlackFileRefused(
            f"{file.get('name', 'That image')} is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB.",
            reason="too_large",
        )


def loader(file: dict[str, Any], deps: SlackDeps, files_info: Callable[[str], dict[str, Any]],
           token: str) -> Callable[[], bytes]:
    """A zero-argument function that downloads the file (run later, on the core's worker) with `token`, the bot
    token of the workspace the file was shared in."""

    def load() -> bytes:
        full = file
        if not full.get("url_private_download") or full.get("file_access") == "check_file_info":
            try:
                full = files_info(file["id"])  # shared from elsewhere: the event carries a stub only
            except SlackApiError as exc:
                raise refusal_for(exc) from exc
        if not is_image(full):
            raise SlackFileRefused("That file is not an image.", reason="not_image")
        check_size(full, deps.max_image_bytes)
        return download(full, deps, token)

    return load


def download(file: dict[str, Any], deps: SlackDeps, token: str) -> bytes:
    """GET `url_private_download` with the workspace's bot token; the answer must be an image."""
    url = file.get("url_private_download") or file.get("url_private")
    if not url:
        raise SlackFileRefused("Slack gave no download link for that file.", reason="no_url")
    try:
        return fetch_image_bytes(
            url, max_bytes=deps.max_image_bytes, timeout_s=deps.fetch_timeout_s, policy=deps.address_policy,
            headers={"Authorization": f"Bearer {token}"},
        )
    except FetchRefused as exc:
        if exc.reason == "not_image":
            # Slack answers a request without a valid token with its HTML sign-in page and status 200.
            raise SlackFileRefused(
                "Slack sent a web page instead of the image: the bot token is missing or lacks the files:read scope.",
                reason="download_not_image",
            ) from exc
        raise
