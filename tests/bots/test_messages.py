"""What the bots say around a caption, for captions a model can really return (an empty one included)."""

from __future__ import annotations

import pytest

from bots import messages
from bots.core import Reply, ReplyKind
from bots.slack.blocks import caption_message


@pytest.mark.parametrize("unsure", [False, True])
def test_an_empty_caption_is_said_as_no_caption_not_as_nothing(unsure):
    # A model can end its caption at once (the end token first); Slack refuses a section with empty text,
    # and a reply of only small print reads as a bug.
    body = messages.caption_body("", unsure)
    assert body.strip() and messages.NO_CAPTION in body
    assert messages.caption_line("", "v1", 0.1, unsure).startswith(body)


def test_slack_caption_blocks_never_hold_empty_text():
    reply = Reply(ReplyKind.CAPTION, "", model_version="v1", caption_id=3, confidence=0.9)
    message = caption_message(reply)
    texts = [block["text"]["text"] for block in message["blocks"] if "text" in block]
    assert texts and all(text.strip() for text in texts)
    assert messages.NO_CAPTION in message["text"]


def test_a_caption_is_said_as_it_is():
    assert messages.caption_body("a red circle", False) == "a red circle"
    assert messages.caption_body("a red circle", True) == "Maybe: a red circle"
