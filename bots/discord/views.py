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
CORRECT_ID = "capbot:correct:{caption_id}"
CORRECT_PATTERN = r"capbot:correct:(?P<caption_id>[0-9]+)"
TEXT_ID = "capbot:correction_text"
MAX_CORRECTION_CHARS = 300
FORM_TIMEOUT_S = 15 * 60  # how long discord.py remembers an open form (submissions work regardless)


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
    """The correction form, pre-filled with the caption. Submissions are handled by `submit_correction`.

    discord.py keeps open forms in memory keyed by custom_id alone and forgets one after its first
    submission, so two people correcting the same caption, or a form submitted after a restart, would
    be dropped silently. The custom_id carries the caption id instead, and `CapBot.on_interaction`
    handles every submission from the interaction's own data.
    """

    def __init__(self, caption_id: int, current: str) -> None:
        super().__init__(
            title=messages.SUGGEST_BUTTON, custom_id=CORRECT_ID.format(caption_id=caption_id), timeout=FORM_TIMEOUT_S
        )
        self.add_item(
            discord.ui.TextInput(
                label="Caption",
                style=discord.TextStyle.paragraph,
                default=current[:MAX_CORRECTION_CHARS],
                max_length=MAX_CORRECTION_CHARS,
                custom_id=TEXT_ID,
            )
        )


def correction_form_caption_id(interaction: discord.Interaction) -> int | None:
    """The caption id of a submitted correction form; None for any other interaction."""
    if interaction.type is not discord.InteractionType.modal_submit or not interaction.data:
        return None
    match = re.fullmatch(CORRECT_PATTERN, str(interaction.data.get("custom_id", "")))
    return int(match["caption_id"]) if match else None


def submitted_text(components: list[dict[str, Any]]) -> str:
    """The text box's value from a modal submission's components (action rows or labels around it)."""
    for component in components:
        if component.get("custom_id") == TEXT_ID:
            return str(component.get("value") or "")
        nested = component.get("components") or ([component["component"]] if "component" in component else [])
        found = submitted_text(nested)
        if found:
            return found
    return ""


async def submit_correction(interaction: discord.Interaction, caption_id: int) -> None:
    """Acknowledge privately, store the correction through the core, and tell the user the outcome."""
    text = submitted_text(list(interaction.data.get("components", [])))  # type: ignore[union-attr]
    await interaction.response.defer(ephemeral=True, thinking=True)
    core = interaction.client.core  # type: ignore[attr-defined]
    reply = await asyncio.to_thread(core.submit_correction, caption_id, origin_of_interaction(interaction), text)
    log.info("correction answered", extra={"caption_id": caption_id, "kind": reply.kind.value})
    await interaction.followup.send(reply.text, ephemeral=True)


async def send_error(interaction: discord.Interaction) -> None:
    """Tell the user something broke, whether or not the interaction was already answered."""
    if interaction.response.is_done():
        await interaction.followup.send(messages.ERROR, ephemeral=True)
    else:
        await interaction.response.send_message(messages.ERROR, ephemeral=True)
