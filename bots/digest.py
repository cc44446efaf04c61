"""The review digest's wording, the same on both platforms: a few images from the top of the review queue
(`storage.queue`), each with its caption, how sure the model was, what users said instead, and how to
correct it (the "Suggest a better caption" button under each, as under any caption)."""

from __future__ import annotations

from bots import messages
from storage.queue import QueueItem


def digest_intro(count: int) -> str:
    """The digest's first message."""
    return (f"Review digest: {count} image(s) the model is least sure about or people disagree on. "
            f"If a caption is wrong, press \u201c{messages.SUGGEST_BUTTON}\u201d under it to correct it; "
            "corrections teach the next version of the model.")


def digest_item(item: QueueItem) -> str:
    """One image's text: caption, confidence, users' corrections (if any) and a link (when there is one)."""
    sure = "confidence unknown" if item.confidence is None else f"{messages.confidence_percent(item.confidence)}% sure"
    lines = [f"\u201c{item.caption}\u201d", f"model {item.model_version} \u00b7 {sure} \u00b7 review score {item.score:.2f}"]
    if item.corrections:
        said = "; ".join(f"\u201c{text}\u201d" for text in item.corrections)
        lines.append(f"{item.users} user(s) said: {said}")
    if item.url:
        lines.append(item.url)
    return "\n".join(lines)


def image_filename(item: QueueItem) -> str:
    """A file name for the image upload (the blob store keeps no name; the hash prefix finds the blob)."""
    return f"review-{item.image_sha256[:12]}.png"
