"""`capbot run` as a user starts it: no bot tokens, a tiny model, then SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx

from capbot.serve import plan_components
from capbot.settings import get_settings


def _start(tmp_path, tiny_model_dir, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CAPBOT_")}
    environ.update(CAPBOT_DATA_DIR=str(tmp_path / "data"), CAPBOT_MODEL=str(tiny_model_dir),
                   CAPBOT_DEVICE="cpu", CAPBOT_PORT="0", **env)
    return subprocess.Popen([sys.executable, "-m", "capbot", "run"], cwd=tmp_path, env=environ,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_url(process, lines, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"url=(http://\S+)", line)
        if found and "listening" in line:
            return found.group(1)
    raise AssertionError("capbot run did not start:\n" + "".join(lines))


def test_run_without_tokens_serves_and_stops_cleanly(tmp_path, tiny_model_dir):
    process = _start(tmp_path, tiny_model_dir)
    lines: list[str] = []
    try:
        url = _wait_for_url(process, lines)
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


def test_components_follow_credentials(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = get_settings(slack_bot_token="xoxb-1", slack_signing_secret="s", discord_token="d",
                            retrain_cron="0 3 * * 0")
    assert all(c.enabled for c in plan_components(settings) if c.name != "slack (socket mode)")
    socket = get_settings(slack_bot_token="xoxb-1", slack_app_token="xapp-1")
    states = {c.name: c.enabled for c in plan_components(socket)}
    assert states == {"slack (http)": False, "slack (socket mode)": True, "discord": False, "retrain schedule": False}
