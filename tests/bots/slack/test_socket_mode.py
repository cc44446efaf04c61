"""Socket Mode end to end against local stand-ins: the real bolt app and slack_sdk's Socket Mode client
open the websocket that a fake apps.connections.open hands out, acknowledge Slack's envelopes, and answer
through the fake Web API exactly as in HTTP mode."""

from __future__ import annotations

import time
from functools import partial

import pytest

from bots.core import BotCore
from bots.fetch import fetch_image_bytes
from bots.slack.app import create_app
from bots.slack.socket_mode import SocketModeRunner
from storage.errors import UserError
from tests.bots.captioners import ColourCaptioner
from tests.bots.slack.conftest import LOCAL, TOKEN, file_share
from tests.fakes.http_images import png_bytes
from tests.fakes.slack_api import TEAM, FakeSlack
from tests.fakes.slack_socket import FakeSocketMode
from tests.fakes.ports import free_port
from bots.connection import Backoff

APP_TOKEN = "xapp-1-A1-1-abc"


@pytest.fixture
def socket_slack(bot_store):
    """(fake Slack Web API, fake Socket Mode websocket, bolt app with no signing secret)."""
    with FakeSlack(TOKEN) as slack, FakeSocketMode() as socket:
        slack.state.app_token, slack.state.socket_url = APP_TOKEN, socket.url
        core = BotCore(ColourCaptioner(), bot_store, fetch_url=partial(fetch_image_bytes, max_bytes=1_000_000,
                                                                         timeout_s=5, policy=LOCAL))
        app = create_app(core, bot_token=TOKEN, signing_secret=None, api_url=slack.api_url, address_policy=LOCAL)
        yield slack, socket, app
        core.close()


def _event_callback(event: dict, event_id: str) -> dict:
    return {"token": "legacy", "team_id": TEAM, "api_app_id": "A1", "type": "event_callback",
            "event_id": event_id, "event_time": int(time.time()), "event": event}


def test_socket_mode_acks_envelopes_and_answers_an_image_post_in_its_thread(socket_slack):
    slack, socket, app = socket_slack
    runner = SocketModeRunner(app, APP_TOKEN)
    runner.start()
    try:
        socket.wait_connected()
        [opened] = slack.calls("apps.connections.open")
        assert opened.headers["authorization"] == f"Bearer {APP_TOKEN}"
        photo = slack.add_file("F1", png_bytes(color=(200, 40, 40)))
        envelope = socket.send_event(_event_callback(file_share([photo]), "EvSocket1"))
        assert socket.wait_for_ack(envelope) == {"envelope_id": envelope}
        [post] = slack.wait_for("chat.postMessage")
        assert post.args["channel"] == "C1" and post.args["thread_ts"] == "1700000000.000100"
        assert "a red picture" in post.args["text"]
        assert post.args["blocks"][-1]["elements"][0]["action_id"] == "suggest_caption"
        # Slack redelivers an envelope it thinks was lost: acknowledged again, answered once.
        again = socket.send_event(_event_callback(file_share([photo]), "EvSocket1"))
        socket.wait_for_ack(again)
        # Marker: a new post sent after the redelivery. The core's one worker answers in order, so once the
        # marker is answered, a second answer to the redelivered post would have been posted already.
        marker = slack.add_file("F2", png_bytes(color=(40, 60, 200)))
        socket.send_event(_event_callback(file_share([marker], ts="1700000000.000200"), "EvSocket2"))
        slack.wait_for("chat.postMessage", where=lambda c: c.args["thread_ts"] == "1700000000.000200")
        assert [c.args["thread_ts"] for c in slack.calls("chat.postMessage")] == ["1700000000.000100", "1700000000.000200"]
    finally:
        runner.stop()


def test_a_refused_token_is_a_clear_error(socket_slack):
    slack, _, app = socket_slack
    slack.state.app_token = "xapp-the-real-one"
    runner = SocketModeRunner(app, APP_TOKEN)
    with pytest.raises(UserError) as info:
        runner.start()
    assert runner.tracker.state().state == "failed"
    runner.stop()
    assert info.value.reason == "slack_refused" and "not_authed" in info.value.message
    assert "CAPBOT_SLACK_APP_TOKEN" in info.value.message and APP_TOKEN not in info.value.message


def test_an_unreachable_slack_is_retried_with_backoff_until_it_answers(bot_store):
    """Slack down when Socket Mode starts (the load run: the process exited), then up: start() returns, the
    runner keeps trying, connects once Slack answers, and envelopes are acknowledged and answered."""
    port = free_port()
    core = BotCore(ColourCaptioner(), bot_store, fetch_url=partial(fetch_image_bytes, max_bytes=1_000_000,
                                                                     timeout_s=5, policy=LOCAL))
    app = create_app(core, bot_token=TOKEN, signing_secret=None, api_url=f"http://127.0.0.1:{port}/api/",
                     address_policy=LOCAL)
    runner = SocketModeRunner(app, APP_TOKEN, backoff=Backoff(0.2, 1.0))
    try:
        runner.start()  # returns although nothing answers
        _wait_until(lambda: runner.tracker.state().failures >= 2, "two failed attempts")
        down = runner.tracker.state()
        assert down.state == "retrying" and "cannot reach Slack" in down.detail
        with FakeSlack(TOKEN, port=port) as slack, FakeSocketMode() as socket:
            slack.state.app_token, slack.state.socket_url = APP_TOKEN, socket.url
            _wait_until(lambda: runner.tracker.state().connected, "the runner to connect")
            photo = slack.add_file("F1", png_bytes(color=(200, 30, 30)))
            envelope = socket.send_event(_event_callback(file_share([photo]), "EvLate"))
            socket.wait_for_ack(envelope)
            [reply] = slack.wait_for("chat.postMessage", timeout=20)
            assert "a red picture" in reply.args["text"]
    finally:
        runner.stop()
        core.close()
    assert runner.tracker.state().state == "stopped"


def _wait_until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_bot_token_in_place_of_app_token_is_refused(socket_slack):
    _, _, app = socket_slack
    with pytest.raises(UserError) as info:
        SocketModeRunner(app, "xoxb-not-an-app-token")
    assert info.value.reason == "bad_app_token" and "xapp-" in info.value.message
