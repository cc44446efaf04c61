"""The live smoke test (`pytest -m modal`): deploy to a real Modal account, get a model in, caption a photo
through the deployed GPU class, tear everything down. Skipped without Modal credentials.

It needs `modal token new` (or MODAL_TOKEN_ID/MODAL_TOKEN_SECRET) and CAPBOT_TEST_MODAL_SECRET naming a
Modal Secret whose CAPBOT_DATABASE_URL is a throwaway PostgreSQL database (the test registers and
activates a tiny model there). It deploys under a unique app and volume name on a T4 (the cheapest GPU)
and deletes them afterwards; expect a few minutes and a few cents.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import skimage

pytestmark = pytest.mark.modal


def _credentials() -> bool:
    has_env = bool(os.environ.get("MODAL_TOKEN_ID") and os.environ.get("MODAL_TOKEN_SECRET"))
    return has_env or (Path.home() / ".modal.toml").is_file()


@pytest.fixture(scope="module")
def smoke_env():
    if not _credentials():
        pytest.skip("no Modal credentials (run `modal token new` or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET)")
    secret = os.environ.get("CAPBOT_TEST_MODAL_SECRET")
    if not secret:
        pytest.skip("CAPBOT_TEST_MODAL_SECRET is not set (a Modal Secret with a throwaway CAPBOT_DATABASE_URL)")
    name = f"capbot-smoke-{secrets.token_hex(3)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPBOT_")}
    env.update(CAPBOT_MODAL_APP_NAME=name, CAPBOT_MODAL_VOLUME_PREFIX=name, CAPBOT_MODAL_SECRET=secret,
               CAPBOT_MODAL_GPU="T4", CAPBOT_MODAL_TRAIN_GPU="T4", CAPBOT_MODAL_RETRAIN_CRON="",
               CAPBOT_MODAL_SCALEDOWN_WINDOW_S="60", CAPBOT_MODAL_CALL_TIMEOUT_S="140")
    yield name, env
    _modal(env, "app", "stop", name, "--yes")
    for role in ("models", "datasets", "runs", "blobs"):
        _modal(env, "volume", "delete", f"{name}-{role}", "--yes")
    _modal(env, "dict", "delete", f"{name}-discord-state", "--yes")


def _modal(env: dict, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "modal", *args], env=env, capture_output=True, timeout=300)


def _capbot(env: dict, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "capbot", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, f"capbot {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def test_deploy_caption_a_photo_tear_down(smoke_env, tmp_path):
    from inference.modeldir import load_metadata

    _, env = smoke_env
    checkout = Path(__file__).resolve().parents[1]
    deployed = _capbot(env, "modal", "deploy", cwd=checkout)
    assert "Slack request URL: https://" in deployed.stdout and "database: migrated to " in deployed.stdout
    model = tmp_path / "tiny"
    _capbot(env, "models", "init", "--preset", "tiny", "--out", str(model), cwd=tmp_path)
    _capbot(env, "modal", "upload-model", str(model), "--activate", cwd=tmp_path)
    photo = Path(skimage.__file__).parent / "data" / "rocket.jpg"
    captioned = _capbot({**env, "CAPBOT_CAPTIONER": "modal"}, "caption", str(photo), "--json", cwd=tmp_path)
    record = json.loads(captioned.stdout.strip().splitlines()[-1])
    assert record["model_version"] == load_metadata(model).version
    assert record["caption"]
