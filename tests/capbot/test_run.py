"""`capbot run` as a user starts it: a tiny model, no bot tokens or a local Slack stand-in, then SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

from capbot.serve import plan_components
from capbot.settings import get_settings
from tests.bots.slack.conftest import file_share
from tests.capbot.capbot_server import wait_for_url
from tests.fakes.http_images import png_bytes
from tests.fakes.slack_api import TEAM, FakeSlack

SLACK_TOKEN = "xoxb-run-token"
SLACK_SECRET = "run-signing-secret"


def _start(tmp_path, tiny_model_dir, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CAPBOT_")}
    environ.update(CAPBOT_DATA_DIR=str(tmp_path / "data"), CAPBOT_MODEL=str(tiny_model_dir),
                   CAPBOT_DEVICE="cpu", CAPBOT_PORT="0", **env)
    return subprocess.Popen([sys.executable, "-m", "capbot", "run"], cwd=tmp_path, env=environ,
                            stderr=subprocess.PIPE, text=True)


def test_run_without_tokens_serves_and_stops_cleanly(tmp_path, tiny_model_dir):
    process = _start(tmp_path, tiny_model_dir)
    lines: list[str] = []
    try:
        url = wait_for_url(process, lines)
        health = httpx.get(url + "healthz", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=60)
    finally:
        process.kill()
    log = "".join(lines) + rest
    assert process.returncode == 0, log
    assert "discord: off (CAPBOT_DISCORD_TOKEN is not set)" in log
    assert "slack (http): off (CAPBOT_SLACK_BOT_TOKEN is not set)" in log
    assert "capbot stopped" in log


def test_run_with_unloadable_model_says_why(tmp_path):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CAPBOT_")}
    environ.update(CAPBOT_DATA_DIR=str(tmp_path / "data"), CAPBOT_MODEL=str(tmp_path / "no-such-model"))
    done = subprocess.run([sys.executable, "-m", "capbot", "run"], cwd=tmp_path, env=environ,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: model directory not found") and "Traceback" not in done.stderr


def test_run_takes_the_model_and_data_directory_as_options(tmp_path, tiny_model_dir):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CAPBOT_")}
    command = [sys.executable, "-m", "capbot", "run", "--model", str(tiny_model_dir), "--data-dir",
               str(tmp_path / "elsewhere"), "--port", "0"]
    process = subprocess.Popen(command, cwd=tmp_path, env={**environ, "CAPBOT_DEVICE": "cpu"}, stderr=subprocess.PIPE,
                               text=True)
    lines: list[str] = []
    try:
        url = wait_for_url(process, lines)
        serving = httpx.get(url + "v1/models", timeout=10).json()["serving"]
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    finally:
        process.kill()
    assert serving == json.loads((tiny_model_dir / "capbot.json").read_text())["version"]
    assert (tmp_path / "elsewhere" / "capbot.db").is_file() and not (tmp_path / "capbot-data").exists()


def test_run_on_an_address_no_interface_has_says_so(tmp_path, capsys):
    from capbot.cli import main

    assert main(["run", "--host", "10.255.255.1", "--port", "0"]) == 2
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert said.startswith("error: cannot listen on 10.255.255.1:0: ")
    assert "no network interface of this machine has that address" in said and "stop what is using it" not in said


def test_run_on_a_busy_port_says_so_in_one_line(tmp_path):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CAPBOT_")}
    # No model would load either: the port is checked first, so the answer is about the port.
    environ.update(CAPBOT_DATA_DIR=str(tmp_path / "data"), CAPBOT_MODEL=str(tmp_path / "no-such-model"),
                   CAPBOT_PORT=str(port))
    try:
        done = subprocess.run([sys.executable, "-m", "capbot", "run"], cwd=tmp_path, env=environ,
                              capture_output=True, text=True, timeout=120)
    finally:
        taken.close()
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert "CAPBOT_PORT" in done.stderr and "Traceback" not in done.stderr


def test_a_slack_bot_token_without_a_signing_secret_is_refused_at_start(tmp_path):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CAPBOT_")}
    # No model would load either: the settings are checked first, so the answer is about Slack.
    environ.update(CAPBOT_DATA_DIR=str(tmp_path / "data"), CAPBOT_MODEL=str(tmp_path / "no-such-model"),
                   CAPBOT_SLACK_BOT_TOKEN=SLACK_TOKEN, CAPBOT_PORT="0")
    done = subprocess.run([sys.executable, "-m", "capbot", "run"], cwd=tmp_path, env=environ,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: CAPBOT_SLACK_BOT_TOKEN is set but CAPBOT_SLACK_SIGNING_SECRET is not")
    assert "CAPBOT_SLACK_APP_TOKEN" in last_line and "Traceback" not in done.stderr and SLACK_TOKEN not in done.stderr


def test_components_follow_credentials(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = get_settings(slack_bot_token="xoxb-1", slack_signing_secret="s", discord_token="d",
                            retrain_cron="0 3 * * 0", digest_cron="0 9 * * *", digest_slack_channel="C0REVIEW")
    assert all(c.enabled for c in plan_components(settings) if c.name != "slack (socket mode)")
    socket = get_settings(slack_bot_token="xoxb-1", slack_app_token="xapp-1")
    states = {c.name: c.enabled for c in plan_components(socket)}
    assert states == {"slack (http)": False, "slack (socket mode)": True, "discord": False, "retrain schedule": False,
                      "review digest": False, "retention sweep": True}
    no_sweep = get_settings(retention_sweep_cron="")
    assert {c.name: c.enabled for c in plan_components(no_sweep)}["retention sweep"] is False


def test_the_slack_install_flow_runs_http_events(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = get_settings(slack_client_id="111.222", slack_client_secret="cs", slack_signing_secret="s",
                            public_url="https://capbot.example.com")
    states = {c.name: (c.enabled, c.why) for c in plan_components(settings)}
    assert states["slack (http)"] == (True, "events at /slack/events; workspaces install at /slack/install")
    assert states["slack (socket mode)"][0] is False


def _keep_reading(process, lines) -> threading.Thread:
    """Collect the rest of the log in the background, so a full stderr pipe never blocks the server."""
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    return reader


def _post_signed(base_url: str, body: bytes, content_type: str) -> httpx.Response:
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=timestamp, body=body)
    headers = {"content-type": content_type, "x-slack-request-timestamp": timestamp, "x-slack-signature": signature}
    return httpx.post(base_url + "slack/events", content=body, headers=headers, timeout=30)


def test_run_captions_slack_images_served_by_the_configured_slack_host(tmp_path, tiny_model_dir):
    # CAPBOT_SLACK_API_URL points at a stand-in on 127.0.0.1 that also serves the files: capbot must
    # download from it, while a link a user types to the same host stays refused (a private address).
    version = json.loads((tiny_model_dir / "capbot.json").read_text())["version"]
    with FakeSlack(SLACK_TOKEN) as slack:
        photo = slack.add_file("F1", png_bytes(color=(200, 40, 40)))
        process = _start(tmp_path, tiny_model_dir, CAPBOT_SLACK_BOT_TOKEN=SLACK_TOKEN,
                         CAPBOT_SLACK_SIGNING_SECRET=SLACK_SECRET, CAPBOT_SLACK_API_URL=slack.api_url)
        lines: list[str] = []
        try:
            url = wait_for_url(process, lines)
            reader = _keep_reading(process, lines)
            event = {"token": "legacy", "team_id": TEAM, "api_app_id": "A1", "type": "event_callback",
                     "event_id": "EvRun1", "event_time": int(time.time()), "event": file_share([photo])}
            assert _post_signed(url, json.dumps(event).encode(), "application/json").status_code == 200
            answer = slack.wait_for_first("chat.postMessage", "chat.postEphemeral", timeout=60)
            command = {"token": "legacy", "team_id": TEAM, "channel_id": "C1", "user_id": "U_ALICE",
                       "command": "/caption", "text": photo["url_private"], "response_url": slack.response_url(),
                       "trigger_id": "trig-run"}
            assert _post_signed(url, urlencode(command).encode(), "application/x-www-form-urlencoded").status_code == 200
            [typed_link] = slack.wait_for("respond", timeout=60)
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
            reader.join(10)
        finally:
            process.kill()
    log = "".join(lines)
    assert answer.method == "chat.postMessage", (answer.args, log)
    assert answer.args["thread_ts"] == "1700000000.000100" and version in answer.args["text"]
    [download] = slack.calls("download")  # the posted file only: the typed link never reached the host
    assert download.args["file"] == "F1" and download.headers["authorization"] == f"Bearer {SLACK_TOKEN}"
    assert "127.0.0.1" in typed_link.args["text"] and "not a public web server" in typed_link.args["text"]
    assert process.returncode == 0 and "Traceback" not in log, log
    # The review digest is opt-in: with a bot token but no CAPBOT_DIGEST_CRON, nothing is posted unasked.
    assert "review digest: off (CAPBOT_DIGEST_CRON is not set)" in log
    assert slack.calls("files.getUploadURLExternal") == [] and len(slack.calls("chat.postMessage")) == 1
