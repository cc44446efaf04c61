"""Socket Mode needs Slack's websocket, so offline we check construction and token validation only."""

from __future__ import annotations

import pytest

from bots.core import BotCore
from bots.slack.app import create_app
from bots.slack.socket_mode import SocketModeRunner
from capbot.errors import UserError
from tests.bots.captioners import ColourCaptioner


@pytest.fixture
def bolt_app(bot_store):
    core = BotCore(ColourCaptioner(), bot_store, fetch_url=lambda url: b"")
    yield create_app(core, bot_token="xoxb-1", signing_secret="s", api_url="http://127.0.0.1:9/api/")
    core.close()


def test_runner_uses_the_apps_client(bolt_app):
    runner = SocketModeRunner(bolt_app, "xapp-1-A1-1-abc")
    assert runner.handler.app is bolt_app
    assert runner.handler.client.web_client.base_url == "http://127.0.0.1:9/api/"  # proxies / stand-ins apply


def test_bot_token_in_place_of_app_token_is_refused(bolt_app):
    with pytest.raises(UserError) as info:
        SocketModeRunner(bolt_app, "xoxb-not-an-app-token")
    assert info.value.reason == "bad_app_token" and "xapp-" in info.value.message
