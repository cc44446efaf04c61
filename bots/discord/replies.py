"""Core replies out: message keyword arguments, with the model version and the suggest button on captions."""

from __future__ import annotations

from typing import Any

import discord

from bots import messages
from bots.core import Reply, ReplyKind
from bots.discord.views import SuggestButton

NO_PINGS = discord.AllowedMentions.none()  # a caption must never ping anyone, whatever the text says


def reply_kwargs(reply: Reply) -> dict[str, Any]:
    """Keyword arguments for `Message.reply` / `followup.send`: caption replies get the version and the button."""
    if reply.kind is ReplyKind.CAPTION:
        assert reply.caption_id is not None and reply.model_version is not None
        view = discord.ui.View(timeout=None)
        view.add_item(SuggestButton(reply.caption_id))
        content = messages.caption_line(reply.text, reply.model_version, reply.confidence, reply.unsure)
        if reply.notice:  # the first caption in a channel says what is kept (bots.core)
            content = f"{content}\n-# {reply.notice}"
        return {"content": content, "view": view, "allowed_mentions": NO_PINGS}
    return {"content": reply.text, "allowed_mentions": NO_PINGS}


def is_private(reply: Reply) -> bool:
    """Whether a reply concerns only the asker (shown ephemerally): refusals and confirmations, not captions."""
    return reply.kind is not ReplyKind.CAPTION
