"""Post the review digest to a Slack channel: an intro, then for each image the image itself
(files_upload_v2) and its caption with the "Suggest a better caption" button (the usual correction modal)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from slack_sdk import WebClient

from bots import messages
from bots.digest import digest_intro, digest_item, image_filename
from bots.slack.blocks import SUGGEST_ACTION
from storage.queue import QueueItem


def post_slack_digest(client: WebClient, channel: str, items: Sequence[QueueItem],
                      read_image: Callable[[str], bytes]) -> int:
    """Post `items` to `channel`; returns how many were posted. Slack errors raise `SlackApiError`."""
    client.chat_postMessage(channel=channel, text=digest_intro(len(items)))
    for item in items:
        client.files_upload_v2(channel=channel, content=read_image(item.image_sha256),
                               filename=image_filename(item), title=item.caption)
        client.chat_postMessage(channel=channel, **_item_message(item))
    return len(items)


def _item_message(item: QueueItem) -> dict[str, Any]:
    text = digest_item(item)
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "plain_text", "text": text}},
            {"type": "actions", "elements": [{
                "type": "button", "action_id": SUGGEST_ACTION, "value": str(item.caption_id),
                "text": {"type": "plain_text", "text": messages.SUGGEST_BUTTON},
            }]},
        ],
    }
