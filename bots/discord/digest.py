"""Post the review digest to a Discord channel over REST (no gateway connection): an intro, then each image
as an attachment with its caption and the persistent "Suggest a better caption" button, which the running
bot answers with the usual correction form."""

from __future__ import annotations

import io
from typing import Callable, Sequence

import discord

from bots.digest import digest_intro, digest_item, image_filename
from bots.discord.endpoints import DEFAULT_API_URL, DEFAULT_GATEWAY_URL, apply_endpoints
from bots.discord.views import SuggestButton
from storage.queue import QueueItem


async def post_discord_digest(token: str, channel_id: int, items: Sequence[QueueItem],
                              read_image: Callable[[str], bytes], *, api_url: str = DEFAULT_API_URL,
                              gateway_url: str = DEFAULT_GATEWAY_URL) -> int:
    """Log in with the bot token, post `items` to the channel and log out; returns how many were posted.

    A bad token raises `discord.LoginFailure`; a channel the bot cannot post in, `discord.HTTPException`.
    """
    apply_endpoints(api_url, gateway_url)
    client = discord.Client(intents=discord.Intents.none())
    try:
        await client.login(token)
        channel = client.get_partial_messageable(channel_id)
        await channel.send(digest_intro(len(items)))
        for item in items:
            view = discord.ui.View(timeout=None)
            view.add_item(SuggestButton(item.caption_id))
            image = discord.File(io.BytesIO(read_image(item.image_sha256)), filename=image_filename(item))
            await channel.send(digest_item(item), file=image, view=view)
    finally:
        await client.close()
    return len(items)
