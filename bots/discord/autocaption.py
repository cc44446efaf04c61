"""Auto-captioning: every image attachment posted where auto-captioning is on gets a caption reply.

Needs the privileged Message Content intent (without it Discord sends messages with no attachments),
so `CapBot` loads this cog only when the intent is requested.
"""

from __future__ import annotations

import asyncio
import logging

import discord
from discord.ext import commands

from bots.discord.attachments import AttachmentRefused, attachment_loader, check_attachment, is_image
from bots.discord.origins import origin_of_message
from bots.discord.replies import reply_kwargs

log = logging.getLogger(__name__)


class AutoCaption(commands.Cog):
    """Listens to MESSAGE_CREATE and hands image attachments to the core."""

    def __init__(self, bot: "commands.Bot") -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """Caption each image attachment of a person's message (never a bot's, a webhook's or our own)."""
        if message.author.bot or message.webhook_id is not None or message.author == self.bot.user:
            return
        for attachment in message.attachments:
            if is_image(attachment):
                await self.caption_attachment(message, attachment)

    async def caption_attachment(self, message: discord.Message, attachment: discord.Attachment) -> None:
        """Ask the core for a caption and reply to the message with it (or with why not, or nothing)."""
        core, max_bytes = self.bot.core, self.bot.max_image_bytes  # type: ignore[attr-defined]
        try:
            check_attachment(attachment, max_bytes)
        except AttachmentRefused as exc:
            # Unasked-for captioning stays quiet about images it skips; the log says why.
            log.info("attachment skipped", extra={"reason": exc.reason, "attachment_size": attachment.size})
            return
        loader = attachment_loader(attachment, max_bytes, asyncio.get_running_loop())
        # image_posted reads the channel and opt-out settings from the database: keep that off the event loop.
        future = await asyncio.to_thread(core.image_posted, origin_of_message(message), loader)
        reply = await asyncio.wrap_future(future)
        if reply.silent:
            return
        try:
            await message.reply(**reply_kwargs(reply), mention_author=False)
        except discord.HTTPException:
            log.exception("could not post caption reply", extra={"channel": message.channel.id})
