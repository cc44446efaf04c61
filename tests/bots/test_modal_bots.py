"""The chat side on Modal through `.local()`: the web endpoint (page, API, Slack events) captioning through
the GPU class, and the Discord gateway with its keeper (one instance, handed over before Modal's time
limit, restarted when it is not running)."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest
import skimage
from fastapi.testclient import TestClient
from slack_sdk.signature import SignatureVerifier

from capbot import modal_jobs
from inference.modeldir import load_metadata
from tests.fakes.discord_server import FakeDiscord
from tests.modal_support import LocalCall, LocalDeployment, LocalMethod, LocalVolume, deployment_env

pytestmark = [pytest.mark.filterwarnings("error::modal.exception.DeprecationError"),
              pytest.mark.filterwarnings("ignore:.*is executing locally and will not have access:UserWarning")]
on_postgres = pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                                      indirect=True)

PHOTO = (Path(skimage.__file__).parent / "data" / "chelsea.png").read_bytes()


def _gpu_class_here(monkeypatch) -> LocalMethod:
    """`ModalCaptioner` finds the deployed GPU class; here its calls run `GpuCaptioner`'s body locally."""
    from inference.modal_app import GpuCaptioner

    gpu = GpuCaptioner()
    method = LocalMethod(lambda image, options: gpu.caption.local([image], [options])[0])
    monkeypatch.setattr("inference.modal_captioner.deployed_class", LocalDeployment(method).lookup)
    return method


@on_postgres
def test_web_endpoint_captions_through_the_gpu_class_and_answers_slack(monkeypatch, tmp_path, tiny_model_dir,
                                                                       database_url):
    from bots.modal_app import web

    deployment = deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url,
                                CAPBOT_SLACK_BOT_TOKEN="xoxb-1-test", CAPBOT_SLACK_SIGNING_SECRET="signing-secret")
    gpu_calls = _gpu_class_here(monkeypatch)
    client = TestClient(web.local())
    answer = client.post("/api/captions", files={"file": ("cat.png", PHOTO, "image/png")})
    assert answer.status_code == 200, answer.text
    version = load_metadata(tiny_model_dir).version
    assert answer.json()["model_version"] == version and answer.json()["text"]
    assert len(gpu_calls.sent) == 1
    assert client.get("/healthz").json() == {"status": "ok", "model_version": version}
    assert deployment.volumes["blobs"].commits == 1  # the stored image is visible to the retraining container
    assert len(list((deployment.data_dir / "blobs").rglob("*"))) >= 3  # ab/cd/<sha>
    refused = client.post("/api/captions", files={"file": ("x.png", b"not an image", "image/png")})
    assert refused.status_code == 422 and len(gpu_calls.sent) == 1  # refused before any GPU call
    body = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "t"})
    stamp = str(int(time.time()))
    signature = SignatureVerifier("signing-secret").generate_signature(timestamp=stamp, body=body)
    slack = client.post("/slack/events", content=body, headers={
        "content-type": "application/json", "x-slack-request-timestamp": stamp, "x-slack-signature": signature})
    assert slack.status_code == 200 and slack.json() == {"challenge": "c-123"}
    unsigned = client.post("/slack/events", content=body, headers={"content-type": "application/json"})
    assert unsigned.status_code == 401


@on_postgres
def test_web_endpoint_without_slack_credentials_has_no_slack_route(monkeypatch, tmp_path, tiny_model_dir,
                                                                   database_url):
    from bots.modal_app import web

    deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url)
    _gpu_class_here(monkeypatch)
    client = TestClient(web.local())
    assert client.get("/").status_code == 200
    assert client.post("/slack/events", content="{}").status_code == 404


class Spawner:
    """`discord_gateway.spawn` as the keeper and the gateway call it; records the calls it made."""

    def __init__(self) -> None:
        self.calls: list[LocalCall] = []

    def __call__(self) -> LocalCall:
        self.calls.append(LocalCall())
        return self.calls[-1]


def test_keeper_starts_the_gateway_only_when_no_call_is_queued_or_running(monkeypatch, caplog):
    monkeypatch.setenv("CAPBOT_DISCORD_TOKEN", "discord-token")
    state: dict = {}
    spawn, running = Spawner(), set()
    with caplog.at_level(logging.WARNING):
        assert modal_jobs.keep_discord_running(state, spawn, running.__contains__) == "started"
    assert state["call_id"] == spawn.calls[0].object_id and "was not running" in caplog.text
    running.add(state["call_id"])
    assert modal_jobs.keep_discord_running(state, spawn, running.__contains__) == "running"
    assert len(spawn.calls) == 1
    running.clear()  # it crashed, or ran out of time without a successor
    assert modal_jobs.keep_discord_running(state, spawn, running.__contains__) == "started"
    assert state["call_id"] == spawn.calls[1].object_id


def test_keeper_does_nothing_without_a_discord_token(monkeypatch):
    monkeypatch.delenv("CAPBOT_DISCORD_TOKEN", raising=False)
    spawn = Spawner()
    assert modal_jobs.keep_discord_running({}, spawn, lambda call_id: False).startswith("off")
    assert spawn.calls == []


@on_postgres
def test_gateway_runs_hands_over_to_its_successor_and_logs_the_gap(monkeypatch, tmp_path, tiny_model_dir,
                                                                  database_url, capsys):
    fake = FakeDiscord(heartbeat_interval_ms=300).start()
    try:
        deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url, CAPBOT_DISCORD_TOKEN=fake.token,
                       CAPBOT_DISCORD_API_URL=fake.api_url, CAPBOT_DISCORD_GATEWAY_URL=fake.gateway_url)
        _gpu_class_here(monkeypatch)
        state, spawn, outcome = {}, Spawner(), {}
        clock = iter([1000.0, 1010.0, 1012.5, 1020.0]).__next__  # start, stop; next start, stop
        run = threading.Thread(target=lambda: outcome.setdefault("first", modal_jobs.run_discord_gateway(
            state, spawn, LocalVolume("blobs"), run_for_s=8, clock=clock)))
        run.start()
        fake.wait_until(lambda: fake.sessions >= 1, timeout=30)
        assert spawn.calls == []  # connected, and its time is not up
        run.join(60)
        assert outcome["first"] == "handed over"
        assert [c.object_id for c in spawn.calls] == [state["call_id"]]  # exactly one successor
        assert state["stopped_at"] == 1010.0
        capsys.readouterr()
        assert modal_jobs.run_discord_gateway(state, spawn, LocalVolume("blobs"), run_for_s=0.5,
                                              clock=clock) == "handed over"
        assert "Discord went unanswered for 2.5 s" in capsys.readouterr().err  # the container's log
        assert fake.sessions >= 2
    finally:
        fake.stop()

