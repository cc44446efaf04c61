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

from capbot.modal import gateway
from inference.modeldir import load_metadata
from tests.fakes.discord_server import FakeDiscord
from tests.modal_support import LocalCall, LocalDeployment, LocalMethod, LocalVolume, deployment_env

pytestmark = [pytest.mark.filterwarnings("error::modal.exception.DeprecationError"),
              pytest.mark.filterwarnings("ignore:.*is executing locally and will not have access:UserWarning")]
on_postgres = pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                                      indirect=True)

PHOTO = (Path(skimage.__file__).parent / "data" / "chelsea.png").read_bytes()


def _gpu_class_here(monkeypatch) -> LocalDeployment:
    """`ModalCaptioner` finds the deployed GPU class; here its calls run `GpuCaptioner`'s body locally."""
    from capbot.modal.app import GpuCaptioner

    gpu = GpuCaptioner()
    deployed = LocalDeployment(LocalMethod(lambda image, options: gpu.caption.local([image], [options])[0]))
    monkeypatch.setattr("inference.modal_captioner.deployed_class", deployed.lookup)
    return deployed


@on_postgres
def test_web_endpoint_captions_through_the_gpu_class_and_answers_slack(monkeypatch, tmp_path, tiny_model_dir,
                                                                       database_url):
    from capbot.modal.app import Web

    deployment = deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url,
                                CAPBOT_SLACK_BOT_TOKEN="xoxb-1-test", CAPBOT_SLACK_SIGNING_SECRET="signing-secret")
    gpu_calls = _gpu_class_here(monkeypatch).caption
    client = TestClient(Web().web.local())
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
    from capbot.modal.app import Web

    deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url)
    _gpu_class_here(monkeypatch)
    client = TestClient(Web().web.local())
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
        assert gateway.keep_discord_running(state, spawn, running.__contains__) == "started"
    assert state["call_id"] == spawn.calls[0].object_id and "was not running" in caplog.text
    running.add(state["call_id"])
    assert gateway.keep_discord_running(state, spawn, running.__contains__) == "running"
    assert len(spawn.calls) == 1
    running.clear()  # it crashed, or ran out of time without a successor
    assert gateway.keep_discord_running(state, spawn, running.__contains__) == "started"
    assert state["call_id"] == spawn.calls[1].object_id


def test_keeper_does_nothing_without_a_discord_token(monkeypatch):
    monkeypatch.delenv("CAPBOT_DISCORD_TOKEN", raising=False)
    spawn = Spawner()
    assert gateway.keep_discord_running({}, spawn, lambda call_id: False).startswith("off")
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
        run = threading.Thread(target=lambda: outcome.setdefault("first", gateway.run_discord_gateway(
            state, spawn, LocalVolume("blobs"), run_for_s=8, clock=clock)))
        run.start()
        fake.wait_until(lambda: fake.sessions >= 1, timeout=30)
        assert spawn.calls == []  # connected, and its time is not up
        run.join(60)
        assert outcome["first"] == "handed over"
        assert [c.object_id for c in spawn.calls] == [state["call_id"]]  # exactly one successor
        assert state["stopped_at"] == 1010.0
        capsys.readouterr()
        assert gateway.run_discord_gateway(state, spawn, LocalVolume("blobs"), run_for_s=0.5,
                                              clock=clock) == "handed over"
        assert "Discord went unanswered for 2.5 s" in capsys.readouterr().err  # the container's log
        assert fake.sessions >= 2
    finally:
        fake.stop()



# --- issue 21: what a real deployment would trip on -------------------------------------------------------

def test_a_gateway_call_that_hit_its_time_limit_or_lost_its_output_is_not_running(monkeypatch):
    """Only the builtin TimeoutError of `get(timeout=0)` means "still pending"; Modal's own TimeoutError
    subclasses mean the call is over (modal 1.6 client source)."""
    import modal
    from modal import exception as modal_errors

    outcomes = {"pending": TimeoutError(), "hit-24h": modal_errors.FunctionTimeoutError("function timed out"),
                "expired": modal_errors.OutputExpiredError("output expired"), "finished": None,
                "crashed": RuntimeError("boom"), "cancelled": modal_errors.InputCancellation("cancelled")}

    class Call:
        def __init__(self, call_id: str) -> None:
            self.call_id = call_id

        def get(self, timeout=None):
            assert timeout == 0
            if outcomes[self.call_id] is not None:
                raise outcomes[self.call_id]

    monkeypatch.setattr(modal.FunctionCall, "from_id", staticmethod(Call))
    seen = {call_id: gateway.call_is_running(call_id) for call_id in outcomes}
    assert seen == {"pending": True, "hit-24h": False, "expired": False, "finished": False, "crashed": False,
                    "cancelled": False}


@on_postgres
def test_a_failed_handover_still_disconnects_so_the_keeper_restarts_discord(monkeypatch, tmp_path, tiny_model_dir,
                                                                           database_url, capsys):
    from modal import exception as modal_errors

    fake = FakeDiscord(heartbeat_interval_ms=300).start()
    try:
        deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url, CAPBOT_DISCORD_TOKEN=fake.token,
                       CAPBOT_DISCORD_API_URL=fake.api_url, CAPBOT_DISCORD_GATEWAY_URL=fake.gateway_url)
        _gpu_class_here(monkeypatch)

        def unreachable():
            raise modal_errors.ConnectionError("Modal unreachable")

        state, outcome = {}, {}
        run = threading.Thread(daemon=True, target=lambda: outcome.setdefault("first", gateway.run_discord_gateway(
            state, unreachable, LocalVolume("blobs"), run_for_s=2)))
        run.start()
        run.join(45)
        assert not run.is_alive(), "the gateway stayed connected after its handover failed"
        assert outcome["first"] == "stopped" and "stopped_at" in state and "call_id" not in state
        assert "handover failed" in capsys.readouterr().err  # the container's log says why
        spawn = Spawner()
        assert gateway.keep_discord_running(state, spawn, lambda call_id: False) == "started"
    finally:
        fake.stop()


@on_postgres
def test_the_web_container_calls_the_app_it_was_deployed_as(monkeypatch, tmp_path, tiny_model_dir, database_url):
    """A deploy under a custom app name: the containers get the plan, not CAPBOT_MODAL_APP_NAME."""
    from capbot.modal.app import Web
    from capbot.modal.plan import PLAN_ENV, ModalPlan

    deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url)
    monkeypatch.setenv(PLAN_ENV, ModalPlan(app_name="captions-prod", call_timeout_s=90).to_json())
    deployed = _gpu_class_here(monkeypatch)
    client = TestClient(Web().web.local())
    answer = client.post("/api/captions", files={"file": ("cat.png", PHOTO, "image/png")})
    assert answer.status_code == 200, answer.text
    assert deployed.looked_up == [("captions-prod", "GpuCaptioner")]


def test_after_a_redeploy_the_keeper_starts_the_new_gateway_and_retires_the_old(monkeypatch):
    monkeypatch.setenv("CAPBOT_DISCORD_TOKEN", "discord-token")
    state = {"call_id": "fc-old", "image_id": "im-old"}
    spawn = Spawner()
    outcome = gateway.keep_discord_running(state, spawn, {"fc-old"}.__contains__, image_id="im-new")
    assert outcome == "replaced"
    assert state == {"call_id": spawn.calls[0].object_id, "image_id": "im-new", "retire": "fc-old"}
    assert gateway.keep_discord_running(state, spawn, {state["call_id"]}.__contains__,
                                           image_id="im-new") == "running"
    assert len(spawn.calls) == 1


@on_postgres
def test_a_gateway_asked_to_retire_disconnects_promptly_without_a_successor(monkeypatch, tmp_path, tiny_model_dir,
                                                                           database_url):
    fake = FakeDiscord(heartbeat_interval_ms=300).start()
    try:
        deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url, CAPBOT_DISCORD_TOKEN=fake.token,
                       CAPBOT_DISCORD_API_URL=fake.api_url, CAPBOT_DISCORD_GATEWAY_URL=fake.gateway_url)
        _gpu_class_here(monkeypatch)
        state, spawn, outcome = {"call_id": "fc-old"}, Spawner(), {}
        run = threading.Thread(daemon=True, target=lambda: outcome.setdefault("old", gateway.run_discord_gateway(
            state, spawn, LocalVolume("blobs"), run_for_s=3600, own_call_id="fc-old", check_every_s=0.2)))
        run.start()
        fake.wait_until(lambda: fake.sessions >= 1, timeout=30)
        state["retire"] = "fc-old"  # what the new deployment's keeper writes
        run.join(30)
        assert not run.is_alive() and outcome["old"] == "retired"
        assert spawn.calls == []  # the new deployment's gateway is already started
    finally:
        fake.stop()


@on_postgres
def test_stopping_a_web_container_drains_it_and_closes_its_connections(monkeypatch, tmp_path, tiny_model_dir,
                                                                       database_url):
    from capbot.modal.app import Web
    from tests.modal_support import stop_container

    deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url, CAPBOT_MODAL_DB_POOL_SIZE="1")
    monkeypatch.setenv("CAPBOT_MODAL_DB_POOL_SIZE", "7")  # what a Secret might say: the deployed plan wins
    _gpu_class_here(monkeypatch)
    web = Web()
    client = TestClient(web.web.local())
    assert client.post("/api/captions", files={"file": ("cat.png", PHOTO, "image/png")}).status_code == 200
    engine = web.container.services.engine
    assert engine.pool.size() == 1 and engine.pool.checkedin() == 1
    stop_container(web)
    assert engine.pool.checkedin() == 0
