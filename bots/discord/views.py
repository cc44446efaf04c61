"""The "Suggest a better caption" button (persistent across restarts) and the correction form it opens: the
caption in a text box, and the model's alternatives in a drop-down (a changed text wins over a picked one)."""

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
CHOICE_ID = "capbot:correction_choice"
MAX_CORRECTION_CHARS = 300
MAX_OPTION_CHARS = 100  # Discord's limit on a select option's label
MAX_OPTIONS = 25  # Discord's limit on options in one select
MAX_LABEL_CHARS = 45  # Discord's limit on a modal label's text
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
    info = await asyncio.to_thread(core.caption_info, caption_id)
    if info is None:
        await interaction.response.send_message(messages.CORRECTION_UNKNOWN, ephemeral=True)
        return
    await interaction.response.send_modal(CorrectionModal(caption_id, info.text, info.alternatives))


class CorrectionModal(discord.ui.Modal):
    """The correction form, pre-filled with the caption. Submissions are handled by `submit_correction`.

    discord.py keeps open forms in memory keyed by custom_id alone and forgets one after its first
    submission, so two people correcting the same caption, or a form submitted after a restart, would
    be dropped silently. The custom_id carries the caption id instead, and `CapBot.on_interaction`
    handles every submission from the interaction's own data.
    """

    def __init__(self, caption_id: int, current: str, alternatives: tuple[str, ...] = ()) -> None:
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
        if alternatives:
            self.add_item(discord.ui.Label(text=messages.PICK_ALTERNATIVE[:MAX_LABEL_CHARS],
                                           component=_alternatives_select(alternatives)))


def _alternatives_select(alternatives: tuple[str, ...]) -> discord.ui.Select:
    options = [
        discord.SelectOption(label=_fit(text), value=str(index)) for index, text in enumerate(alternatives[:MAX_OPTIONS])
    ]
    return discord.ui.Select(custom_id=CHOICE_ID, options=options, required=False, min_values=0, max_values=1)


def _fit(text: str) -> str:
    return text if len(text) <= MAX_OPTION_CHARS else text[:MAX_OPTION_CHARS - 1] + "…"


def correction_form_caption_id(interaction: discord.Interaction) -> int | None:
    """The caption id of a submitted correction form; None for any other interaction."""
    if interaction.type is not discord.InteractionType.modal_submit or not interaction.data:
        return None
    match = re.fullmatch(CORRECT_PATTERN, str(interaction.data.get("custom_id", "")))
    return int(match["caption_id"]) if match else None


def submitted_text(components: list[dict[str, Any]]) -> str:
    """The text box's value from a modal submission's components (action rows or labels around it)."""
    found = _submitted(components, TEXT_ID)
    return str(found.get("value") or "") if found else ""


def submitted_choice(components: list[dict[str, Any]]) -> int | None:
    """The index of the alternative picked in the form's drop-down, or None when none was picked."""
    found = _submitted(components, CHOICE_ID)
    values = (found or {}).get("values") or []
    return int(values[0]) if values and str(values[0]).isdigit() else None


def _submitted(components: list[dict[str, Any]], custom_id: str) -> dict[str, Any] | None:
    for component in components:
        if component.get("custom_id") == custom_id:
            return component
        nested = component.get("components") or ([component["component"]] if "component" in component else [])
        found = _submitted(nested, custom_id)
        if found is not None:
            return found
    return None


async def submit_correction(interaction: discord.Interaction, caption_id: int) -> None:
    """Acknowledge privately, store the correction through the core, and tell the user the outcome."""
    components = list(interaction.data.get("components", []))  # type: ignore[union-attr]
    text, choice = submitted_text(components), submitted_choice(components)
    await interaction.response.defer(ephemeral=True, thinking=True)
    core = interaction.client.core  # type: ignore[attr-defined]
    origin = origin_of_interaction(interaction)
    reply = await asyncio.to_thread(core.submit_correction, caption_id, origin, text, choice)
    log.info("correction answered", extra={"caption_id": caption_id, "kind": reply.kind.value})
    await interaction.followup.send(reply.text, ephemeral=True)


async def send_error(interaction: discord.Interaction) -> None:
    """Tell the user something broke, whether or not the interaction was already answered."""
    if interaction.response.is_done():
        await interaction.followup.send(messages.ERROR, ephemeral=True)
    else:
        await interaction.response.send_message(messages.ERROR, ephemeral=True)
