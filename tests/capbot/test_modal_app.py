"""The composed Modal app (`capbot.modal_app`), read from the objects Modal registered, not from source:
it imports without credentials, carries the GPU class, the web endpoint, the one-instance Discord
gateway, the schedules and the secret, and takes its names from settings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from capbot.modal_config import CAPTION_CLASS, ModalPlan, mount_path
from tests.modal_support import image_build_steps, registered

pytestmark = pytest.mark.filterwarnings("error::modal.exception.DeprecationError")

ROOT = Path(__file__).resolve().parents[2]
MODAL_MODULES = ("capbot.modal_app", "inference.modal_app", "bots.modal_app", "training.modal_app")


def _offline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No Modal credentials anywhere: no MODAL_* variables and an empty HOME (no ~/.modal.toml)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "CAPBOT_"))}
    home = tmp_path / "empty-home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), **extra)
    return env


def _python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


def test_every_modal_module_imports_without_credentials(tmp_path):
    code = (
        "import warnings, modal.exception\n"
        "warnings.simplefilter('error', modal.exception.DeprecationError)\n"
        + "".join(f"import {name}\n" for name in MODAL_MODULES)
        + "import capbot.modal_jobs, capbot.cli.modal_cmds\nprint('imported')\n"
    )
    done = _python(code, _offline_env(tmp_path), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported"


def test_the_composed_app_carries_every_part():
    from capbot import modal_app

    parts = registered(modal_app.app)
    assert set(parts) == {f"{CAPTION_CLASS}.*", "web", "discord_gateway", "discord_keeper", "download_coco",
                          "build_redcaps", "train", "evaluate", "scheduled_retrain", "tensorboard",
                          "register_model", "pull_model"}
    assert set(modal_app.app._local_state.classes) == {CAPTION_CLASS}
    assert modal_app.app.name == "capbot"
    secret = "modal.Secret.from_name('capbot')"
    assert all(secret in parts[name].info.secrets for name in parts if name != "tensorboard")
    assert parts["tensorboard"].info.secrets == []  # it reads logs only: no database, no tokens


def test_the_gpu_class_has_its_gpu_models_volume_and_batching():
    from capbot import modal_app

    gpu = registered(modal_app.app)[f"{CAPTION_CLASS}.*"]
    assert gpu.info.gpus == [("L4", 1)]
    assert {path: mount.name for path, mount in gpu.info.volumes.items()} == {"/data/models": "capbot-models"}
    assert (gpu.info.batching_info.max_batch_size, gpu.info.batching_info.wait_ms) == (32, 50)
    assert gpu.info.method_names == ["caption"]  # a batched class has no other method
    assert (gpu.scaledown_window, gpu.min_containers) == (300, 0)


def test_web_discord_and_schedules():
    from capbot import modal_app

    parts = registered(modal_app.app)
    assert parts["web"].info.web_info is not None and parts["web"].info.gpus == []
    assert set(parts["web"].info.volumes) == {mount_path("blobs")}
    assert parts["discord_gateway"].max_containers == 1 and parts["discord_gateway"].info.gpus == []
    assert parts["discord_gateway"].info.timeout == 24 * 3600
    assert parts["discord_keeper"].info.schedule == "Period(minutes=5)"
    retrain = parts["scheduled_retrain"]
    assert retrain.info.schedule == "Cron('0 3 * * 0', UTC)"
    assert retrain.info.gpus == [("L40S", 1)] and retrain.max_containers == 1
    assert set(retrain.info.volumes) == {mount_path(r) for r in ("datasets", "runs", "models", "blobs")}
    assert parts["tensorboard"].info.web_info is not None
    assert set(parts["tensorboard"].info.volumes) == {mount_path("runs")}
    assert parts["train"].info.max_retries == 3  # a preempted run is retried and resumes


def test_names_and_sizes_come_from_settings(tmp_path):
    code = (
        "import json\nfrom capbot import modal_app\nfrom tests.modal_support import registered\n"
        "parts = registered(modal_app.app)\n"
        "gpu = parts['GpuCaptioner.*']\n"
        "print(json.dumps({'app': modal_app.app.name, 'gpu': gpu.info.gpus, 'batch': gpu.info.batching_info.max_batch_size,"
        " 'wait': gpu.info.batching_info.wait_ms, 'scaledown': gpu.scaledown_window, 'warm': gpu.min_containers,"
        " 'volumes': sorted({v.name for p in parts.values() for v in p.info.volumes.values()}),"
        " 'secrets': sorted({s for p in parts.values() for s in p.info.secrets}),"
        " 'train_gpu': parts['train'].info.gpus, 'cron': parts['scheduled_retrain'].info.schedule,"
        " 'web_warm': parts['web'].min_containers}))\n"
    )
    env = _offline_env(tmp_path, CAPBOT_MODAL_APP_NAME="captions-prod", CAPBOT_MODAL_GPU="H100",
                       CAPBOT_MODAL_TRAIN_GPU="A100-80GB", CAPBOT_MODAL_BATCH_SIZE="8", CAPBOT_MODAL_BATCH_WAIT_MS="5",
                       CAPBOT_MODAL_SCALEDOWN_WINDOW_S="60", CAPBOT_MODAL_MIN_CONTAINERS="1",
                       CAPBOT_MODAL_VOLUME_PREFIX="cb", CAPBOT_MODAL_SECRET="cb-secret",
                       CAPBOT_MODAL_RETRAIN_CRON="15 4 * * 1", CAPBOT_MODAL_WEB_MIN_CONTAINERS="1")
    done = _python(code, env, tmp_path)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {"app": "captions-prod", "gpu": [["H100", 1]], "batch": 8, "wait": 5, "scaledown": 60, "warm": 1,
                    "volumes": ["cb-blobs", "cb-datasets", "cb-models", "cb-runs"],
                    "secrets": ["modal.Secret.from_name('cb-secret')"],
                    "train_gpu": [["A100-80GB", 1]], "cron": "Cron('15 4 * * 1', UTC)", "web_warm": 1}


def test_no_schedule_when_the_cron_setting_is_empty(tmp_path):
    code = ("from capbot import modal_app\nfrom tests.modal_support import registered\n"
            "print(registered(modal_app.app)['scheduled_retrain'].info.schedule)\n")
    done = _python(code, _offline_env(tmp_path, CAPBOT_MODAL_RETRAIN_CRON=""), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"


def test_containers_get_the_deploy_time_plan_whatever_else_their_environment_says(monkeypatch):
    plan = ModalPlan(app_name="deployed-name", gpu="A10", batch_size=4)
    monkeypatch.setenv("CAPBOT_MODAL_APP_NAME", "from-a-secret")
    for name, value in plan.container_env().items():
        monkeypatch.setenv(name, value)
    assert ModalPlan.current() == plan
    assert plan.container_env()["CAPBOT_DATA_DIR"] == "/data"
    assert not any("DATABASE" in name or "TOKEN" in name for name in plan.container_env())


def test_the_image_installs_capbot_from_the_lock_file_and_the_cuda_torch_pin():
    from capbot import modal_common

    steps = image_build_steps(modal_common.image)
    installs = [cmd for commands, _ in steps for cmd in commands if "pip install" in cmd]
    requirement_files = {path for _, files in steps for path in files.values()}
    pyproject = (ROOT / "pyproject.toml").read_text()
    pinned_torch = re.search(r'"(torch==[^"]+)"', pyproject).group(1)
    ours = [cmd for cmd in installs if "--upgrade pip" not in cmd]  # Modal's base image updates pip itself
    assert ours == [f"RUN python -m pip install {pinned_torch}",  # PyPI's Linux torch wheel: the CUDA build
                    "RUN python -m pip install -r /.requirements.txt",
                    f"RUN python -m pip install --no-deps {modal_common.SOURCE_DIR}"]
    assert requirement_files == {str(ROOT / "requirements.lock")}
    copied = [cmd for commands, _ in steps for cmd in commands if cmd.startswith("COPY . ")]
    assert len(copied) == len(modal_common.PACKAGES) + len(modal_common.PROJECT_FILES)
