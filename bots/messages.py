"""Every sentence the bots say, in one place so both platforms word things the same way."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bots.core import CommunityView

SUGGEST_BUTTON = "Suggest a better caption"
BUSY = "I'm busy captioning other images right now; please try again shortly."
RATE_LIMITED = "You've asked for {limit} captions in the last minute; please try again in {seconds} s."
ERROR = "Sorry, something went wrong while captioning that image. The problem has been logged."
CORRECTION_THANKS = "Thanks! Your caption was saved and will help the next version of the model."
CONFIRMATION_THANKS = "Thanks! Noted that this caption is right: that helps the next version of the model too."
CORRECTION_UNKNOWN = "That caption no longer exists (it may have been forgotten at its author's request)."
OPTED_OUT = (
    "You're opted out: I won't auto-caption your images and your corrections won't be used for training. "
    "Use `optin` to undo."
)
OPTED_IN = "You're opted in again: I'll auto-caption your images where auto-captioning is on."
FORGOTTEN = "Done: I deleted {captions} caption(s), {corrections} correction(s) and {images} image(s) of yours."
CHANNEL_ON = "Auto-captioning is now on in this channel."
CHANNEL_OFF = "Auto-captioning is now off in this channel. `/caption` still works on request."
CHANNEL_FORBIDDEN = "Only workspace admins and channel managers can turn auto-captioning on or off."
NO_IMAGE = "I couldn't find an image to caption. Attach one, give a URL, or post one in this channel first."
CORRECTIONS_LIMITED = "You've sent {limit} corrections in the last minute; please try again in {seconds} s."
UNKNOWN_ALTERNATIVE = "That suggestion is no longer offered for this caption; please type your caption instead."
UNSURE = "I'm not sure about this one. If it's wrong, please suggest a better caption."
PICK_ALTERNATIVE = "Or pick one of my other guesses"
CORRECTION_HINT = "Describe the picture"


NO_CAPTION = "(the model gave no caption for this image)"


def caption_body(text: str, unsure: bool) -> str:
    """The caption as said to users: as is, or as a guess when the model is unsure; a model that ended its
    caption at once gets `NO_CAPTION` (Slack refuses empty text, and an empty reply reads as a bug)."""
    if not text.strip():
        return NO_CAPTION
    return f"Maybe: {text}" if unsure else text


def caption_details(model_version: str, confidence: float | None) -> str:
    """The small print under a caption: model version, and how sure the model was when known."""
    details = f"model {model_version}"
    if confidence is not None:
        details += f" · {confidence_percent(confidence)}% sure"
    return details


def caption_line(text: str, model_version: str, confidence: float | None = None, unsure: bool = False) -> str:
    """The reply body for a caption: the text (hedged when unsure, with an invitation to correct it), then
    the model version and confidence in small print."""
    lines = [caption_body(text, unsure)]
    if unsure:
        lines.append(UNSURE)
    lines.append(f"_{caption_details(model_version, confidence)}_")
    return "\n".join(lines)


def confidence_percent(confidence: float) -> int:
    """Confidence in [0, 1] as a whole percentage."""
    return round(max(0.0, min(1.0, confidence)) * 100)


def rate_limited(limit: int, retry_after_s: float) -> str:
    """The rate-limit refusal with the wait rounded up to whole seconds."""
    return RATE_LIMITED.format(limit=limit, seconds=_whole_seconds(retry_after_s))


def corrections_limited(limit: int, retry_after_s: float) -> str:
    """The correction rate-limit refusal with the wait rounded up to whole seconds."""
    return CORRECTIONS_LIMITED.format(limit=limit, seconds=_whole_seconds(retry_after_s))


def _whole_seconds(seconds: float) -> int:
    return max(1, int(seconds + 0.999))


# --- privacy (docs/privacy.md) -----------------------------------------------------------------------------------

COMMUNITY_FORBIDDEN = ("Only workspace admins (Slack) or members with Manage Server (Discord) can change what this "
                       "community shares.")
NEEDS_COMMUNITY = "That is a setting of a workspace or server: use it in one of its channels."
BAD_RETENTION = "Give the days to keep images as a whole number from 0 (keep none) to 36500, or `default`."
MYDATA_SENT = ("Here is everything I store about you: {summary}. It is only for you; `/caption forget` deletes it "
               "all.")
MYDATA_SENT_DM = "I've sent everything I store about you ({summary}) to our direct messages. Only you can see it."
MYDATA_TOO_LARGE = ("Your images together are too large to send here ({size:.0f} MB), so this file has your "
                    "captions and corrections without them; an operator can give you the images "
                    "(`capbot export-user`).")


def retention_phrase(days: int | None) -> str:
    """How long uncorrected images are kept, as a phrase."""
    if days is None:
        return "until someone asks me to forget them"
    if days == 0:
        return "not at all: an image is saved only when someone corrects or confirms its caption"
    return f"for {days} day{'s' if days != 1 else ''}"


def _consent_sentence(view: "CommunityView") -> str:
    who = "an admin's choice" if view.consent_chosen else "the operator's default"
    if view.training_consent:
        return f"Images and corrections from here may train the next version of the model ({who})."
    return f"Nothing from here trains the model ({who})."


def privacy_notice(view: "CommunityView") -> str:
    """The one-time notice with the bot's first caption in a channel."""
    trains = "they may train the model" if view.training_consent else "nothing from here trains the model"
    return (f"About your data: I keep the images I caption here {retention_phrase(view.retention_days)}, their "
            f"captions and your corrections; {trains}. `/caption privacy` says more, `/caption optout` stops it for "
            "you, `/caption mydata` gives you a copy and `/caption forget` deletes yours.")


def privacy_text(view: "CommunityView") -> str:
    """`/caption privacy`: what is kept, for how long, what trains the model, and how to change each."""
    return "\n".join([
        "What I keep here:",
        f"- Images I caption: {retention_phrase(view.retention_days)}. An image someone corrected or confirmed is "
        "kept until the people who made it or corrected it ask me to forget them.",
        "- Captions (with where, when and for whom) and the corrections people send: until forgotten.",
        f"Training: {_consent_sentence(view)} Admins change it with `/caption training on|off`, and the image "
        "retention with `/caption retention DAYS|default`.",
        "Your choices: `/caption optout` (no auto-captions of your images; your corrections never train the "
        "model), `/caption mydata` (a copy of everything I store about you), `/caption forget` (delete it all).",
    ])


def settings_text(view: "CommunityView", channel: str) -> str:
    """`/caption settings`: the community's choices (auto-captioning per channel, consent, retention)."""
    here = dict(view.channels).get(channel, view.auto_caption_default)
    switched = ", ".join(f"<#{c}> {'on' if on else 'off'}" for c, on in view.channels) or "none"
    retention = retention_phrase(view.retention_days)
    if view.community_retention_days is not None and view.operator_retention_days is not None \
            and view.community_retention_days > view.operator_retention_days:
        retention += f" (you chose {view.community_retention_days} days; the operator keeps at most " \
                     f"{view.operator_retention_days})"
    elif view.community_retention_days is not None:
        retention += " (this community's choice)"
    else:
        retention += " (the operator's default)"
    return "\n".join([
        "Settings here:",
        f"- Auto-captioning: {'on' if here else 'off'} in this channel; channels nobody switched are "
        f"{'on' if view.auto_caption_default else 'off'}; switched: {switched}. (`/caption on|off`)",
        f"- Training: {_consent_sentence(view)} (`/caption training on|off`)",
        f"- Keeping uncorrected images: {retention}. (`/caption retention DAYS|default`)",
    ])


def training_changed(view: "CommunityView") -> str:
    """The answer to `/caption training on|off`."""
    if view.training_consent:
        return "Done: images and corrections from here may train the next version of the model."
    return ("Done: nothing from here trains the model any more; the next retraining run leaves this community's "
            "images and corrections out.")


def retention_changed(view: "CommunityView") -> str:
    """The answer to `/caption retention ...`."""
    text = f"Done: uncorrected images from here are kept {retention_phrase(view.retention_days)}."
    if view.community_retention_days is not None and view.retention_days != view.community_retention_days:
        text += f" (The operator keeps them at most {view.operator_retention_days} days.)"
    return text


def data_summary(captions: int, corrections: int, images: int) -> str:
    """'3 captions, 1 correction and 2 images'."""
    def count(n: int, word: str) -> str:
        return f"{n} {word}{'s' if n != 1 else ''}"
    return f"{count(captions, 'caption')}, {count(corrections, 'correction')} and {count(images, 'image')}"
