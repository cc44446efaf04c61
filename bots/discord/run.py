"""Start the Discord bot, keep it running until asked to stop, and close it cleanly."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord

from bots.core import BotCore
from bots.discord.bot import CapBot, build_intents
from bots.discord.endpoints import DEFAULT_API_URL, DEFAULT_GATEWAY_URL, apply_endpoints
from storage.errors import UserError

log = logging.getLogger(__name__)

__all__ = ["DiscordLoginError", "build_intents", "run_discord_bot"]


class DiscordLoginError(UserError):
    """Discord rejected the bot token."""


async def run_discord_bot(
    core: BotCore,
    token: str,
    *,
    max_image_bytes: int,
    api_url: str = DEFAULT_API_URL,
    gateway_url: str = DEFAULT_GATEWAY_URL,
    message_content: bool = True,
    stop: asyncio.Event | None = None,
    **bot_options: Any,
) -> None:
    """Run capbot on Discord until `stop` is set (or the connection ends for good), then close.

    When Discord refuses the privileged Message Content intent (not enabled in the Developer Portal),
    reconnects without it: commands and context menus keep working, auto-captioning is off.
    """
    apply_endpoints(api_url, gateway_url)
    if not message_content:
        log.warning("Discord Message Content intent disabled by settings: running with commands only")
    while True:
        bot = CapBot(core, max_image_bytes=max_image_bytes, message_content=message_content, **bot_options)
        try:
            await _run_until_stopped(bot, token, stop)
            return
        except discord.PrivilegedIntentsRequired:
            if not message_content:
                raise
            log.warning(
                "Discord refused the Message Content intent (enable it under Bot > Privileged Gateway Intents); "
                "reconnecting with commands only"
            )
            message_content = False
        except discord.LoginFailure as exc:
            raise DiscordLoginError(
                "Discord rejected the bot token; check CAPBOT_DISCORD_TOKEN.", reason="discord_login"
            ) from exc


async def _run_until_stopped(bot: CapBot, token: str, stop: asyncio.Event | None) -> None:
    async with bot:
        runner = asyncio.create_task(bot.start(token), name="capbot-discord")
        waiters: set[asyncio.Task[Any]] = {runner}
        if stop is not None:
            waiters.add(asyncio.create_task(stop.wait(), name="capbot-discord-stop"))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiters - {runner}:
                task.cancel()
        if not runner.done():
            await bot.close()
        await runner  # re-raises what ended the connection, if anything did
