"""The "Suggest a better caption" button (persistent across restarts) and the correction form it opens."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import discord

from bots import messages
from bots.discord.origins import origin_of_interaction

log = logging.getLogger(__name__)

SUGGEST_ID = "capbot:suggest:{caption_id}"
SUGGEST_PATTERN = r"capbot:suggest:(?P<caption_id>[0-9]+)"
MAX_CORRECTION_CHARS = 300


class SuggestButton(discord.ui.DynamicItem[discord.ui.Button], template=SUGGEST_PATTERN):
    """A button whose custom_id carries the caption id, so it works on replies posted before a restart."""

    def __init__(self, caption_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=messages.SUGGEST_BUTTON,
                style=discord.ButtonStyle.secondary,
                custom_id=SUGGEST_ID.format(caption_id=caption_id),
            )
        )
        self.caption_id = caption_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> "SuggestButton":
        return cls(int(match["caption_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await open_correction_form(interaction, self.caption_id)


def caption_id_of(message: discord.Message) -> int | None:
    """The caption id behind a capbot reply, read from its suggest button; None for any other message."""
    for row in message.components:
        for child in getattr(row, "children", []):
            match = re.fullmatch(SUGGEST_PATTERN, getattr(child, "custom_id", None) or "")
            if match:
                return int(match["caption_id"])
    return None


async def open_correction_form(interaction: discord.Interaction, caption_id: int) -> None:
    """Answer with the correction form pre-filled with the stored caption (a modal must be the first answer)."""
    core = interaction.client.core  # type: ignore[attr-defined]
    text = await asyncio.to_thread(core.caption_text, caption_id)
    if text is None:
        await interaction.response.send_message(messages.CORRECTION_UNKNOWN, ephemeral=True)
        return
    await interaction.response.send_modal(CorrectionModal(caption_id, text))


class CorrectionModal(discord.ui.Modal):
    """The correction form; submitting stores the correction through the core or says why it was refused."""

    def __init__(self, caption_id: int, current: str) -> None:
        super().__init__(title=messages.SUGGEST_BUTTON, custom_id=f"capbot:correct:{caption_id}", timeout=None)
        self.caption_id = caption_id
        self.text: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label="Caption",
            style=discord.TextStyle.paragraph,
            default=current[:MAX_CORRECTION_CHARS],
            max_length=MAX_CORRECTION_CHARS,
            custom_id="capbot:correction_text",
        )
        self.add_item(self.text)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        core = interaction.client.core  # type: ignore[attr-defined]
        origin = origin_of_interaction(interaction)
        reply = await asyncio.to_thread(core.submit_correction, self.caption_id, origin, self.text.value)
        log.info("correction answered", extra={"caption_id": self.caption_id, "kind": reply.kind.value})
        await interaction.followup.send(reply.text, ephemeral=True)

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:
        log.exception("correction form failed", exc_info=error)
        await send_error(interaction)


async def send_error(interaction: discord.Interaction) -> None:
    """Tell the user something broke, whether or not the interaction was already answered."""
    if interaction.response.is_done():
        await interaction.followup.send(messages.ERROR, ephemeral=True)
    else:
        await interaction.response.send_message(messages.ERROR, ephemeral=True)
