"""A running capbot Slack app: real bolt app + FastAPI route, its Web API client on a local fake Slack."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from slack_sdk.signature import SignatureVerifier

from bots.core import BotCore
from bots.fetch import AddressPolicy, fetch_image_bytes
from bots.slack.app import create_app
from bots.slack.http import slack_router
from tests.bots.captioners import ColourCaptioner
from tests.fakes.http_images import png_bytes
from tests.fakes.slack_api import TEAM, Call, FakeSlack

SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token"
LOCAL = AddressPolicy(allow_private=True)
MARKER_IMAGE = png_bytes(color=(40, 60, 200))


@dataclass
class SlackHarness:
    slack: FakeSlack
    core: BotCore
    http: TestClient
    markers: int = 0

    def marker(self, channel: str = "C1") -> Call:
        """Post one more image in `channel` and wait for its caption; returns that chat.postMessage call.

        The observable end of everything sent before it: events are handled while their request is
        answered, and the core's one worker (make_slack's default) runs jobs in order and posts each reply
        before taking the next, so any reply an earlier event causes is posted before the marker's. Its
        file id is `FMARK<n>` and its ts `1800000000.<n>`.
        """
        self.markers += 1
        ts = f"1800000000.{self.markers:06d}"
        photo = self.slack.add_file(f"FMARK{self.markers}", MARKER_IMAGE)
        self.event(file_share([photo], ts=ts, channel=channel), event_id=f"EvMarker{self.markers}")
        [post] = self.slack.wait_for("chat.postMessage", where=lambda c: c.args.get("thread_ts") == ts)
        return post

    def post(self, body: bytes, content_type: str, *, timestamp: int | None = None, secret: str = SECRET,
             headers: dict[str, str] | None = None):
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
        all_headers = {"content-type": content_type, "x-slack-request-timestamp": ts, "x-slack-signature": signature}
        return self.http.post("/slack/events", content=body, headers={**all_headers, **(headers or {})})

    def event(self, event: dict[str, Any], event_id: str = "Ev1", **kwargs):
        body = {"token": "legacy", "team_id": TEAM, "api_app_id": "A1", "type": "event_callback",
                "event_id": event_id, "event_time": int(time.time()), "event": event}
        return self.post(json.dumps(body).encode(), "application/json", **kwargs)

    def command(self, text: str, user: str = "U_ALICE", channel: str = "C1", **kwargs):
        form = {"token": "legacy", "team_id": TEAM, "channel_id": channel, "user_id": user, "command": "/caption",
                "text": text, "response_url": self.slack.response_url(), "trigger_id": "trig-cmd"}
        return self.post(urlencode(form).encode(), "application/x-www-form-urlencoded", **kwargs)

    def interaction(self, payload: dict[str, Any], **kwargs):
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self.post(body, "application/x-www-form-urlencoded", **kwargs)


def file_share(files: list[dict], user: str = "U_ALICE", ts: str = "1700000000.000100", **extra) -> dict:
    """A `message` event with subtype `file_share`, as Slack sends it."""
    return {"type": "message", "subtype": "file_share", "channel": "C1", "channel_type": "channel",
            "user": user, "ts": ts, "text": "", "files": files, **extra}


@pytest.fixture
def make_slack(bot_store):
    """Factory: `make_slack(captioner=..., policy=..., **BotCore kwargs) -> SlackHarness` (cleaned up after)."""
    stack = []

    def build(captioner=None, policy: AddressPolicy = LOCAL, max_image_bytes: int = 1_000_000, **core_kwargs):
        slack = FakeSlack(TOKEN).__enter__()
        fetch = partial(fetch_image_bytes, max_bytes=max_image_bytes, timeout_s=5, policy=policy)
        core = BotCore(captioner or ColourCaptioner(), bot_store, fetch_url=fetch, **core_kwargs)
        bolt = create_app(core, bot_token=TOKEN, signing_secret=SECRET, api_url=slack.api_url,
                          max_image_bytes=max_image_bytes, address_policy=policy)
        web = FastAPI()
        web.include_router(slack_router(bolt))
        http = TestClient(web).__enter__()
        stack.append((slack, core, http))
        return SlackHarness(slack, core, http)

    yield build
    for slack, core, http in stack:
        http.__exit__(None, None, None)
        core.close()
        slack.__exit__(None, None, None)
