"""Discord and Slack Socket Mode down when `capbot run` starts, then up (issue 22, item 9).

In the load run the Discord bot stopped for good and Socket Mode took the whole process down. Now both keep
trying with backoff while the web server serves, /readyz and /metrics say where each stands, and once the
local stand-ins answer, both connect and answer users."""

from __future__ import annotations

import re
import time

import httpx

from tests.bots.slack.conftest import file_share
from tests.capbot.capbot_server import running_capbot
from tests.fakes.discord_server import FakeDiscord, snowflake, user_payload
from tests.fakes.http_images import png_bytes
from tests.fakes.ports import free_port
from tests.fakes.slack_api import TEAM, FakeSlack
from tests.fakes.slack_socket import FakeSocketMode

SLACK_TOKEN = "xoxb-reconnect-token"
APP_TOKEN = "xapp-1-A1-1-reconnect"


def _ready(url: str) -> dict:
    answer = httpx.get(url + "readyz", timeout=30)
    assert answer.status_code == 200, answer.text  # the web API is ready whatever the platforms do
    return answer.json()


def _wait_for(url: str, condition, what: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        platforms = _ready(url)["platforms"]
        if condition(platforms):
            return platforms
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {platforms}"
        time.sleep(0.2)


def _metric(url: str, name: str, platform: str) -> float:
    text = httpx.get(url + "metrics", timeout=30).text
    found = re.search(rf'^{name}\{{platform="{platform}"\}} (\S+)$', text, re.MULTILINE)
    assert found, text
    return float(found.group(1))


def test_platforms_down_at_start_are_retried_reported_and_connect_when_up(tmp_path, tiny_model_dir):
    discord_port, slack_port = free_port(), free_port()
    discord = FakeDiscord(port=discord_port)  # not started yet: nothing listens on either port
    env = {"CAPBOT_DISCORD_TOKEN": discord.token, "CAPBOT_DISCORD_API_URL": discord.api_url,
           "CAPBOT_DISCORD_GATEWAY_URL": discord.gateway_url, "CAPBOT_SLACK_BOT_TOKEN": SLACK_TOKEN,
           "CAPBOT_SLACK_APP_TOKEN": APP_TOKEN, "CAPBOT_SLACK_API_URL": f"http://127.0.0.1:{slack_port}/api/"}
    try:
        with running_capbot(tmp_path, tiny_model_dir, **env) as server:
            _down_then_up(server, discord, slack_port)
    finally:  # after capbot stopped: a stand-in going away first would be an outage in the middle of the run
        discord.stop()
    log = "".join(server.log)
    assert "Traceback" not in log and SLACK_TOKEN not in log and APP_TOKEN not in log, log


def _down_then_up(server, discord: FakeDiscord, slack_port: int) -> None:
    # 1. Both down: the web server serves, each platform says it is retrying, and why.
    down = _wait_for(server.url, lambda p: all(p.get(n, {}).get("failures", 0) >= 1 for n in ("discord", "slack")),
                     "a failed attempt on each platform")
    assert {n: p["state"] for n, p in down.items()} == {"discord": "retrying", "slack": "retrying"}
    assert "cannot reach Discord" in down["discord"]["detail"] and "cannot reach Slack" in down["slack"]["detail"]
    assert _metric(server.url, "capbot_platform_connected", "discord") == 0.0
    assert _metric(server.url, "capbot_platform_connect_failures_total", "slack") >= 1

    # 2. Both come up where capbot has been trying: both connect, without a restart.
    discord.start()
    with FakeSlack(SLACK_TOKEN, port=slack_port) as slack, FakeSocketMode() as socket:
        slack.state.app_token, slack.state.socket_url = APP_TOKEN, socket.url
        _wait_for(server.url, lambda p: p["discord"]["state"] == p["slack"]["state"] == "connected",
                  "both platforms to connect")
        assert _metric(server.url, "capbot_platform_connected", "discord") == 1.0
        assert _metric(server.url, "capbot_platform_connected", "slack") == 1.0

        # 3. And they answer users.
        photo = slack.add_file("F1", png_bytes(color=(200, 30, 30)))
        envelope = socket.send_event({"token": "legacy", "team_id": TEAM, "api_app_id": "A1", "type": "event_callback",
                                      "event_id": "EvUp", "event_time": int(time.time()), "event": file_share([photo])})
        socket.wait_for_ack(envelope, timeout=30)
        slack.wait_for("chat.postMessage", timeout=60)
        posted = discord.post_message(author=user_payload(snowflake(), "alice"),
                                      attachments=[discord.add_attachment("d.png", png_bytes(), "image/png")])
        discord.wait_for(lambda r: r.method == "POST" and r.path.endswith("/messages") and str(
            (r.json or {}).get("message_reference", {}).get("message_id")) == posted["id"], timeout=60)
