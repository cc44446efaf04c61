"""The `/caption` command group and the message context menus "Caption image" and "Suggest a better caption".

Privacy: `/caption privacy`, `settings` and `mydata` answer only the asker; `training` and `retention` are the
server's choices, for members with Manage Server.

Every handler acknowledges first (Discord allows 3 s), then does the work off the event loop and follows up.
"""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Callable, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bots import messages
from bots.core import BotCore, Reply
from bots.discord.attachments import AttachmentRefused, attachment_loader, check_attachment, first_image
from bots.discord.origins import origin_of_interaction
from bots.discord.replies import is_private, reply_kwargs
from bots.discord.views import caption_id_of, open_correction_form
from storage.communities import MAX_RETENTION_DAYS

log = logging.getLogger(__name__)

NOT_A_CAPTION = "That message isn't one of my captions; use this on a caption I posted."


def manages_server(interaction: discord.Interaction) -> bool:
    """Whether the member may decide for the whole server (Manage Server), in a server."""
    return interaction.guild_id is not None and interaction.permissions.manage_guild


async def acknowledge(interaction: discord.Interaction, *, private: bool = False) -> None:
    """Defer the interaction (type 5, "thinking") so Discord keeps it open while the work runs."""
    await interaction.response.defer(ephemeral=private, thinking=True)


class CaptionCommands(commands.GroupCog, group_name="caption", group_description="Caption images with capbot"):
    """`/caption image|on|off|optout|optin|forget|privacy|settings|mydata|training|retention` plus the two
    message context menus."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self.menus = [
            app_commands.ContextMenu(name="Caption image", callback=self.caption_message),
            app_commands.ContextMenu(name=messages.SUGGEST_BUTTON, callback=self.suggest_for_message),
        ]
        super().__init__()

    async def cog_load(self) -> None:
        for menu in self.menus:
            self.bot.tree.add_command(menu)

    async def cog_unload(self) -> None:
        for menu in self.menus:
            self.bot.tree.remove_command(menu.name, type=menu.type)

    @property
    def core(self) -> BotCore:
        return self.bot.core  # type: ignore[attr-defined]

    # --- captions ---

    @app_commands.command(name="image", description="Caption an attached image or an image URL")
    @app_commands.describe(attachment="An image to caption", url="An http(s) link to an image")
    async def image(
        self, interaction: discord.Interaction, attachment: discord.Attachment | None = None, url: str | None = None
    ) -> None:
        await self.caption_for(interaction, attachment=attachment, url=url)

    async def caption_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Context menu "Caption image": caption the first image of the chosen message."""
        attachment = first_image(message)
        if attachment is None:
            await interaction.response.send_message(messages.NO_IMAGE, ephemeral=True)
            return
        await self.caption_for(interaction, attachment=attachment, message=message)

    async def caption_for(
        self,
        interaction: discord.Interaction,
        *,
        attachment: discord.Attachment | None = None,
        url: str | None = None,
        message: discord.Message | None = None,
    ) -> None:
        """Check what can be checked at once, acknowledge, then caption on the core's queue and follow up."""
        if attachment is None and not url:
            await interaction.response.send_message(messages.NO_IMAGE, ephemeral=True)
            return
        source = None
        if attachment is not None:
            try:
                check_attachment(attachment, self.bot.max_image_bytes)  # type: ignore[attr-defined]
            except AttachmentRefused as exc:
                await interaction.response.send_message(exc.message, ephemeral=True)
                return
            source = attachment_loader(attachment, self.bot.max_image_bytes, asyncio.get_running_loop())  # type: ignore[attr-defined]
        await acknowledge(interaction)
        origin = origin_of_interaction(interaction, message)
        future = await asyncio.to_thread(self.core.caption_requested, origin, source, None if source else url)
        reply = await asyncio.wrap_future(future)
        if is_private(reply):
            # The first follow-up would fill the public "thinking..." placeholder and show the refusal to
            # the whole channel; without the placeholder, a follow-up can be ephemeral.
            await interaction.delete_original_response()
            await interaction.followup.send(reply.text, ephemeral=True)
            return
        await interaction.followup.send(**reply_kwargs(reply))

    # --- corrections ---

    async def suggest_for_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Context menu "Suggest a better caption": open the correction form for one of our captions."""
        caption_id = caption_id_of(message) if message.author == self.bot.user else None
        if caption_id is None:
            await interaction.response.send_message(NOT_A_CAPTION, ephemeral=True)
            return
        await open_correction_form(interaction, caption_id)

    # --- channel and user settings ---

    @app_commands.command(name="on", description="Auto-caption images posted in this channel (Manage Channels)")
    async def on(self, interaction: discord.Interaction) -> None:
        await self.set_channel(interaction, True)

    @app_commands.command(name="off", description="Stop auto-captioning in this channel (Manage Channels)")
    async def off(self, interaction: discord.Interaction) -> None:
        await self.set_channel(interaction, False)

    async def set_channel(self, interaction: discord.Interaction, enabled: bool) -> None:
        """Turn auto-captioning on or off; the core refuses unless the member may manage this channel."""
        allowed = interaction.guild_id is not None and interaction.permissions.manage_channels
        origin = origin_of_interaction(interaction)
        await self.private_call(interaction, lambda: self.core.set_channel(origin, enabled, allowed=allowed))

    @app_commands.command(name="optout", description="Stop auto-captioning your images and using your corrections")
    async def optout(self, interaction: discord.Interaction) -> None:
        origin = origin_of_interaction(interaction)
        await self.private_call(interaction, lambda: self.core.set_opt_out(origin, True))

    @app_commands.command(name="optin", description="Undo optout")
    async def optin(self, interaction: discord.Interaction) -> None:
        origin = origin_of_interaction(interaction)
        await self.private_call(interaction, lambda: self.core.set_opt_out(origin, False))

    @app_commands.command(name="forget", description="Delete your captions, corrections and images")
    async def forget(self, interaction: discord.Interaction) -> None:
        origin = origin_of_interaction(interaction)
        await self.private_call(interaction, lambda: self.core.forget_me(origin))

    # --- privacy and the server's choices ---

    @app_commands.command(name="privacy", description="What capbot keeps here, for how long, and what trains it")
    async def privacy(self, interaction: discord.Interaction) -> None:
        origin = origin_of_interaction(interaction)
        await self.private_call(interaction, lambda: self.core.privacy(origin))

    @app_commands.command(name="settings", description="This server's choices: auto-captioning, training, retention")
    async def settings(self, interaction: discord.Interaction) -> None:
        origin = origin_of_interaction(interaction)
        await self.private_call(interaction, lambda: self.core.community_settings(origin))

    @app_commands.command(name="training",
                          description="May this server's images and corrections train the model? (Manage Server)")
    @app_commands.describe(state="on: they may; off: the next retraining leaves them out")
    async def training(self, interaction: discord.Interaction, state: Literal["on", "off"]) -> None:
        origin = origin_of_interaction(interaction)
        allowed = manages_server(interaction)
        await self.private_call(interaction, lambda: self.core.set_training(origin, state == "on", allowed=allowed))

    @app_commands.command(name="retention",
                          description="Keep uncorrected images at most this many days (Manage Server)")
    @app_commands.describe(days="0 keeps none; leave it out to follow the operator's default")
    async def retention(self, interaction: discord.Interaction,
                        days: app_commands.Range[int, 0, MAX_RETENTION_DAYS] | None = None) -> None:
        origin = origin_of_interaction(interaction)
        allowed = manages_server(interaction)
        await self.private_call(interaction, lambda: self.core.set_retention(origin, days, allowed=allowed))

    @app_commands.command(name="mydata", description="Get everything capbot stores about you, as one file")
    async def mydata(self, interaction: discord.Interaction) -> None:
        """Build the archive off the loop and send it as an ephemeral attachment (without the images when
        they would not fit Discord's attachment limit)."""
        await acknowledge(interaction, private=True)
        origin = origin_of_interaction(interaction)
        export = await asyncio.to_thread(self.core.my_data, origin)
        note = messages.MYDATA_SENT
        if len(export.data) > interaction.filesize_limit:
            size_mb = len(export.data) / 1e6
            export = await asyncio.to_thread(self.core.my_data, origin, include_images=False)
            note = messages.MYDATA_TOO_LARGE.format(size=size_mb) + " " + messages.MYDATA_SENT
        summary = messages.data_summary(export.captions, export.corrections, export.images)
        await interaction.followup.send(note.format(summary=summary), ephemeral=True,
                                        file=discord.File(io.BytesIO(export.data), filename=export.filename))

    async def private_call(self, interaction: discord.Interaction, call: Callable[[], Reply]) -> None:
        """Acknowledge privately, run a quick core call off the loop, and answer only the asker."""
        await acknowledge(interaction, private=True)
        reply = await asyncio.to_thread(call)
        await interaction.followup.send(reply.text, ephemeral=is_private(reply))
