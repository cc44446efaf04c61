"""Who may turn auto-captioning on or off in a Slack channel, and who may decide for the whole workspace.

Slack's Web API does not expose the "Channel Manager" role to bot tokens, so capbot allows: workspace
owners and admins (users.info: is_owner / is_primary_owner / is_admin), the channel's creator
(conversations.info: creator), and anyone in their own direct message with the bot. Training consent and
image retention are the workspace's: only owners and admins change them.
"""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)


def is_workspace_admin(client: WebClient, user_id: str) -> bool:
    """True when `user_id` is an owner or admin of the workspace the client's token belongs to."""
    try:
        user = client.users_info(user=user_id)["user"]
    except SlackApiError as exc:
        log.warning("permission lookup failed", extra={"error": exc.response.get("error")})
        return False
    return bool(user.get("is_owner") or user.get("is_primary_owner") or user.get("is_admin"))


def can_manage_channel(client: WebClient, user_id: str, channel_id: str) -> bool:
    """True when `user_id` may switch auto-captioning in `channel_id` (see the module docstring)."""
    try:
        user = client.users_info(user=user_id)["user"]
        if user.get("is_owner") or user.get("is_primary_owner") or user.get("is_admin"):
            return True
        channel = client.conversations_info(channel=channel_id)["channel"]
    except SlackApiError as exc:
        log.warning("permission lookup failed", extra={"error": exc.response.get("error")})
        return False
    return bool(channel.get("is_im")) or channel.get("creator") == user_id
