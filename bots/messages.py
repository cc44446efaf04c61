"""Every sentence the bots say, in one place so both platforms word things the same way."""

from __future__ import annotations

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


def caption_body(text: str, unsure: bool) -> str:
    """The caption as said to users: as is, or as a guess when the model is unsure."""
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
