"""Start the Discord bot, keep it running until asked to stop, and close it cleanly.

Discord that cannot be reached (at start-up, or when discord.py gives up reconnecting) is tried again with
backoff until it answers or `stop` is set; the connection's state is reported to a `ConnectionTracker`. A
rejected token is final: the tracker says so and `DiscordLoginError` is raised.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import discord

from bots.connection import Backoff, ConnectionTracker
from bots.core import BotCore
from bots.discord.bot import CapBot, build_intents
from bots.discord.endpoints import DEFAULT_API_URL, DEFAULT_GATEWAY_URL, apply_endpoints
from storage.errors import UserError

log = logging.getLogger(__name__)

__all__ = ["DiscordLoginError", "build_intents", "run_discord_bot"]


class DiscordLoginError(UserError):
    """Discord rejected the bot token."""


# Failures that say Discord (or the way to it) is down for now, not that capbot is misconfigured.
_UNREACHABLE = (OSError, aiohttp.ClientError, asyncio.TimeoutError, discord.GatewayNotFound, discord.ConnectionClosed,
                discord.HTTPException)


async def run_discord_bot(
    core: BotCore,
    token: str,
    *,
    max_image_bytes: int,
    api_url: str = DEFAULT_API_URL,
    gateway_url: str = DEFAULT_GATEWAY_URL,
    message_content: bool = True,
    stop: asyncio.Event | None = None,
    tracker: ConnectionTracker | None = None,
    backoff: Backoff | None = None,
    shard_count: int | None = None,
    **bot_options: Any,
) -> None:
    """Run capbot on Discord until `stop` is set (or the connection ends for good), then close.

    When Discord refuses the privileged Message Content intent (not enabled in the Developer Portal),
    reconnects without it: commands and context menus keep working, auto-captioning is off. When Discord
    cannot be reached, tries again after `backoff` (1 s doubling to 60 s by default), reporting to `tracker`.
    `shard_count`: gateway shards to open (None: as many as Discord recommends).
    """
    apply_endpoints(api_url, gateway_url)
    tracker = tracker or ConnectionTracker("discord")
    backoff = backoff or Backoff()
    if not message_content:
        log.warning("Discord Message Content intent disabled by settings: running with commands only")
    while True:
        bot = CapBot(core, max_image_bytes=max_image_bytes, message_content=message_content, shard_count=shard_count,
                     **bot_options)
        _report_to(tracker, bot, backoff)
        tracker.connecting()
        try:
            await _run_until_stopped(bot, token, stop)
            tracker.stopped()
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
            tracker.failed("Discord rejected the bot token; check CAPBOT_DISCORD_TOKEN")
            raise DiscordLoginError(
                "Discord rejected the bot token; check CAPBOT_DISCORD_TOKEN.", reason="discord_login"
            ) from exc
        except _UNREACHABLE as exc:
            delay = backoff.next_delay()
            tracker.retrying(f"cannot reach Discord ({_describe(exc)})", delay)
            log.warning("cannot reach Discord, trying again", extra={"error": _describe(exc), "wait_s": round(delay, 1)})
            if await _stopped_within(stop, delay):
                tracker.stopped()
                return


def _report_to(tracker: ConnectionTracker, bot: CapBot, backoff: Backoff) -> None:
    """Keep `tracker` up to date while discord.py runs (and reconnects) the gateway by itself."""

    async def ready() -> None:
        backoff.reset()
        tracker.connected(f"connected to {len(bot.guilds)} server(s) over {bot.shard_count} shard(s)")

    async def resumed() -> None:
        tracker.connected("connected (session resumed)")

    async def disconnected() -> None:
        if not bot.is_closed():
            tracker.disconnected("the gateway connection dropped; discord.py is reconnecting")

    bot.add_listener(ready, "on_ready")
    bot.add_listener(resumed, "on_resumed")
    bot.add_listener(disconnected, "on_disconnect")


async def _stopped_within(stop: asyncio.Event | None, seconds: float) -> bool:
    """Wait `seconds`, or less if `stop` is set meanwhile; True if it was."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        return False
    return True


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


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
