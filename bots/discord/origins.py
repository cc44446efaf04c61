"""Discord ids in: the `Origin` the core expects for a message or an interaction."""

from __future__ import annotations

import discord

from bots.core import Origin

PLATFORM = "discord"


def origin_of_message(message: discord.Message) -> Origin:
    """Who posted `message`, and where."""
    return Origin(
        platform=PLATFORM,
        workspace=str(message.guild.id) if message.guild else None,
        channel=str(message.channel.id),
        user=str(message.author.id),
        message_ref=str(message.id),
    )


def origin_of_interaction(interaction: discord.Interaction, message: discord.Message | None = None) -> Origin:
    """Who used a command, button or form, and where (`message`: the one it acts on, if any)."""
    return Origin(
        platform=PLATFORM,
        workspace=str(interaction.guild_id) if interaction.guild_id else None,
        channel=str(interaction.channel_id),
        user=str(interaction.user.id),
        message_ref=str(message.id) if message is not None else None,
    )
