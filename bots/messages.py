"""Every sentence the bots say, in one place so both platforms word things the same way."""

from __future__ import annotations

SUGGEST_BUTTON = "Suggest a better caption"
BUSY = "I'm busy captioning other images right now; please try again shortly."
RATE_LIMITED = "You've asked for {limit} captions in the last minute; please try again in {seconds} s."
ERROR = "Sorry, something went wrong while captioning that image. The problem has been logged."
CORRECTION_THANKS = "Thanks! Your caption was saved and will help the next version of the model."
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


def caption_line(text: str, model_version: str) -> str:
    """The reply body for a caption: the text, then the model version in small print."""
    return f"{text}\n_model {model_version}_"


def rate_limited(limit: int, retry_after_s: float) -> str:
    """The rate-limit refusal with the wait rounded up to whole seconds."""
    return RATE_LIMITED.format(limit=limit, seconds=max(1, int(retry_after_s + 0.999)))
