"""`CapBot`: the discord.py bot, given its core and limits in the constructor; features live in cogs.

It is an `AutoShardedBot`: one process runs every gateway shard (Discord asks for one per 2,500 servers). The
shard count is Discord's recommendation (GET /gateway/bot) unless `shard_count` is given."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bots.core import BotCore
from bots.discord.autocaption import AutoCaption
from bots.discord.commands import CaptionCommands
from bots.discord.views import SuggestButton, correction_form_caption_id, send_error, submit_correction

log = logging.getLogger(__name__)


def build_intents(message_content: bool) -> discord.Intents:
    """Guild and message events; Message Content (privileged) only when auto-captioning is wanted."""
    intents = discord.Intents.default()
    intents.message_content = message_content
    return intents


class CapBot(commands.AutoShardedBot):
    """capbot on Discord. `core` is a `bots.core.BotCore`; the bot only parses, calls it, and formats."""

    def __init__(
        self,
        core: BotCore,
        *,
        max_image_bytes: int,
        message_content: bool = True,
        sync_commands: bool = True,
        shard_count: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,  # no text commands: everything is an app command
            intents=build_intents(message_content),
            help_command=None,
            shard_count=shard_count,
            **options,
        )
        self.core = core
        self.max_image_bytes = max_image_bytes
        self.message_content = message_content
        self.sync_commands = sync_commands
        self.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]

    async def setup_hook(self) -> None:
        """Register the persistent button, the cogs, and (optionally) overwrite the global app commands."""
        self.add_dynamic_items(SuggestButton)
        await self.add_cog(CaptionCommands(self))
        if self.message_content:
            await self.add_cog(AutoCaption(self))
        else:
            log.warning(
                "Discord auto-captioning is off: the Message Content intent is not enabled, "
                "so only /caption and the context menus work"
            )
        if self.sync_commands:
            synced = await self.tree.sync()
            log.info("discord app commands synced", extra={"commands": [c.name for c in synced]})

    async def on_message(self, message: discord.Message, /) -> None:
        """No text commands: messages go only to the auto-captioning cog (commands.Bot would parse them)."""

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Handle correction form submissions (see `CorrectionModal` for why not in the modal itself)."""
        caption_id = correction_form_caption_id(interaction)
        if caption_id is None:
            return
        try:
            await submit_correction(interaction, caption_id)
        except Exception:
            log.exception("correction form failed", extra={"caption_id": caption_id})
            await send_error(interaction)

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """A bug in a command: log it with its traceback and tell the user something went wrong."""
        command = getattr(interaction.command, "name", None)
        log.error("discord app command failed", exc_info=error, extra={"command": command})
        try:
            await send_error(interaction)
        except discord.HTTPException:
            log.exception("could not report the failure to the user")
