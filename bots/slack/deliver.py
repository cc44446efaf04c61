"""Turning a core `Reply` into Slack messages: threaded captions, ephemeral notices, slash-command responses."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any, Callable

from slack_sdk import WebClient

from bots import messages
from bots.core import Reply, ReplyKind
from bots.slack.blocks import caption_message
from storage.errors import UserError

log = logging.getLogger(__name__)


def when_done(future: Future, send: Callable[[Reply], None]) -> None:
    """Call `send(reply)` once the core's future resolves (on the worker thread); log a failed send."""

    def _callback(done: Future) -> None:
        try:
            send(done.result())
        except Exception:
            log.exception("could not deliver a Slack reply")

    future.add_done_callback(_callback)


def post_in_thread(client: WebClient, channel: str, thread_ts: str, user: str, reply: Reply) -> None:
    """Captions go in the image's thread for everyone; refusals, busy and errors only to the poster."""
    if reply.silent:
        return
    if reply.kind is ReplyKind.CAPTION:
        client.chat_postMessage(channel=channel, thread_ts=thread_ts, **caption_message(reply))
    else:
        client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts, text=reply.text)


def respond_with(respond: Callable[..., Any], reply: Reply) -> None:
    """Answer a slash command: a caption in the channel, anything else only to the caller."""
    if reply.silent:
        return
    if reply.kind is ReplyKind.CAPTION:
        respond(response_type="in_channel", **caption_message(reply))
    else:
        respond(response_type="ephemeral", text=reply.text)


def respond_safely(respond: Callable[..., Any], work: Callable[[], Reply]) -> None:
    """Run a quick core call and answer with its reply; a failure is still answered (and logged)."""
    try:
        reply = work()
    except UserError as exc:
        reply = Reply(ReplyKind.REFUSED, exc.message, reason=exc.reason)
    except Exception:
        log.exception("slash command failed")
        reply = Reply(ReplyKind.ERROR, messages.ERROR, reason="internal")
    respond_with(respond, reply)
