"""The deployable Modal app (`capbot.modal.app`), read from the objects Modal registered, not from source:
it imports without credentials, carries the GPU class, the web endpoint, the one-instance Discord
gateway, the migration job, the schedules and the secret, and takes its names from settings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from capbot.modal.plan import CAPTION_CLASS, MIGRATION_JOB, ModalPlan, mount_path
from tests.modal_support import image_build_steps, registered

pytestmark = pytest.mark.filterwarnings("error::modal.exception.DeprecationError")

ROOT = Path(__file__).resolve().parents[2]
MODAL_MODULES = ("capbot.modal.app", "capbot.modal.deploy", "capbot.cli.modal_cmds")


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
        + "print('imported')\n"
    )
    done = _python(code, _offline_env(tmp_path), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported"


def test_the_composed_app_carries_every_part():
    from capbot.modal import app as modal_app

    parts = registered(modal_app.app)
    assert set(parts) == {f"{CAPTION_CLASS}.*", "Web.*", "discord_gateway", "discord_keeper", MIGRATION_JOB,
                          "download_coco", "build_redcaps", "train", "evaluate", "scheduled_retrain", "tensorboard",
                          "register_model", "pull_model", "sweep_images"}
    assert set(modal_app.app._local_state.classes) == {CAPTION_CLASS, "Web"}
    assert modal_app.app.name == "capbot"
    secret = "modal.Secret.from_name('capbot')"
    assert all(secret in parts[name].info.secrets for name in parts if name != "tensorboard")
    assert parts["tensorboard"].info.secrets == []  # it reads logs only: no database, no tokens


def test_the_gpu_class_has_its_gpu_models_volume_and_batching():
    from capbot.modal import app as modal_app

    gpu = registered(modal_app.app)[f"{CAPTION_CLASS}.*"]
    assert gpu.info.gpus == [("L4", 1)]
    assert {path: mount.name for path, mount in gpu.info.volumes.items()} == {"/data/models": "capbot-models"}
    assert (gpu.info.batching_info.max_batch_size, gpu.info.batching_info.wait_ms) == (32, 50)
    assert gpu.info.method_names == ["caption"]  # a batched class has no other method
    assert (gpu.scaledown_window, gpu.min_containers, gpu.max_containers) == (300, 0, 5)


def test_web_discord_and_schedules():
    from capbot.modal import app as modal_app

    parts = registered(modal_app.app)
    web = parts["Web.*"].info
    assert web.method_names == ["web"] and web.method_details["web"] is not None and web.gpus == []
    assert set(web.volumes) == {mount_path("blobs")}
    assert parts[MIGRATION_JOB].max_containers == 1 and parts[MIGRATION_JOB].info.gpus == []
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
        "import json\nfrom capbot.modal import app as modal_app\nfrom tests.modal_support import registered\n"
        "parts = registered(modal_app.app)\n"
        "gpu = parts['GpuCaptioner.*']\n"
        "print(json.dumps({'app': modal_app.app.name, 'gpu': gpu.info.gpus, 'batch': gpu.info.batching_info.max_batch_size,"
        " 'wait': gpu.info.batching_info.wait_ms, 'scaledown': gpu.scaledown_window, 'warm': gpu.min_containers,"
        " 'volumes': sorted({v.name for p in parts.values() for v in p.info.volumes.values()}),"
        " 'secrets': sorted({s for p in parts.values() for s in p.info.secrets}),"
        " 'train_gpu': parts['train'].info.gpus, 'cron': parts['scheduled_retrain'].info.schedule,"
        " 'web_warm': parts['Web.*'].min_containers}))\n"
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
    code = ("from capbot.modal import app as modal_app\nfrom tests.modal_support import registered\n"
            "parts = registered(modal_app.app)\n"
            "print(parts['scheduled_retrain'].info.schedule, parts['sweep_images'].info.schedule)\n")
    done = _python(code, _offline_env(tmp_path, CAPBOT_MODAL_RETRAIN_CRON="", CAPBOT_MODAL_SWEEP_CRON=""), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None None"


def test_containers_get_the_deploy_time_plan_whatever_else_their_environment_says(monkeypatch):
    plan = ModalPlan(app_name="deployed-name", gpu="A10", batch_size=4)
    monkeypatch.setenv("CAPBOT_MODAL_APP_NAME", "from-a-secret")
    for name, value in plan.container_env().items():
        monkeypatch.setenv(name, value)
    assert ModalPlan.current() == plan
    assert plan.container_env()["CAPBOT_DATA_DIR"] == "/data"
    assert not any("DATABASE" in name or "TOKEN" in name for name in plan.container_env())


# --- issue 21: what a real deployment would trip on -------------------------------------------------------

# Java runtime packages of each Debian release Modal's builders base their images on (/work/shared/ENVIRONMENT.md,
# Debian's archive): bookworm ships openjdk-17, trixie openjdk-21 and -25; `default-jre-headless` names the
# release's own JRE in every release (for bullseye only that name is recorded here).
DEBIAN_JAVA = {
    "bullseye": {"default-jre-headless"},
    "bookworm": {"default-jre-headless", "openjdk-17-jre-headless"},
    "trixie": {"default-jre-headless", "openjdk-21-jre-headless", "openjdk-25-jre-headless"},
}


def _builder_versions() -> list[str]:
    """Every image builder version the installed client knows that builds Python 3.11 images."""
    import typing

    from modal import _image

    return [v for v in typing.get_args(_image.ImageBuilderVersion)
            if v != "PREVIEW" and "3.11" in _image.SUPPORTED_PYTHON_SERIES.get(v, ())]


def test_the_image_installs_only_packages_its_debian_release_has_on_every_builder_version():
    from capbot.modal import image as modal_image

    versions = _builder_versions()
    assert "2026.10" in versions  # the newest builder, on trixie
    missing = {}
    for version in versions:
        steps = image_build_steps(modal_image.image, version)
        release = re.search(r"-slim-(\w+)", steps[0][0][0]).group(1)
        ours = [cmd for commands, _ in steps[1:] for cmd in commands if cmd.startswith("RUN apt-get install")]
        packages = {p for cmd in ours for p in cmd.split()[3:] if not p.startswith("-")}
        assert release in DEBIAN_JAVA, f"builder {version} bases on {release}: record its Java packages"
        assert packages, "the image installs no Java: COCO metrics need it"
        if not packages <= DEBIAN_JAVA[release]:
            missing[f"{version} ({release})"] = sorted(packages - DEBIAN_JAVA[release])
    assert missing == {}


def _lock(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            package, _, version = line.partition("==")
            assert version and ";" not in line and " " not in line, f"{name}: {line!r} is not an exact pin"
            pins[package.lower().replace("_", "-")] = version
    return pins


def test_the_image_installs_the_gpu_lock_then_the_runtime_lock_then_capbot():
    from capbot.modal import image as modal_image

    steps = image_build_steps(modal_image.image)
    installs = [cmd for commands, _ in steps for cmd in commands if "pip install" in cmd and "--upgrade pip" not in cmd]
    files = [path for _, copied in steps for path in copied.values() if path.endswith(".lock")]
    assert files == [str(ROOT / "requirements-gpu.lock"), str(ROOT / "requirements-runtime.lock")]
    assert [cmd.split(" -r ")[0] for cmd in installs[:2]] == ["RUN python -m pip install"] * 2
    assert installs[2:] == [f"RUN python -m pip install --no-deps {modal_image.SOURCE_DIR}"]
    copied = [cmd for commands, _ in steps for cmd in commands if cmd.startswith("COPY . ")]
    assert len(copied) == len(modal_image.PACKAGES) + len(modal_image.PROJECT_FILES)


def test_the_locks_hold_no_test_tools_and_the_gpu_lock_pins_the_cuda_torch_build():
    runtime, gpu = _lock("requirements-runtime.lock"), _lock("requirements-gpu.lock")
    pyproject = (ROOT / "pyproject.toml").read_text()
    test_tools = re.search(r"^test = \[(.*)\]$", pyproject, re.M).group(1)
    for tool in re.findall(r'"([A-Za-z0-9_.-]+)', test_tools):
        assert tool.lower() not in runtime and tool.lower() not in gpu, tool
    assert not {"pytest", "iniconfig", "pluggy", "execnet", "pyee", "imageio", "tifffile"} & set(runtime)
    assert "torch" not in runtime and gpu["torch"] == re.search(r'"torch==([^"]+)"', pyproject).group(1)
    assert "triton" in gpu and any(name.startswith("nvidia-cudnn") for name in gpu)
    assert any(name.startswith("nvidia-nccl") for name in gpu)
    shared = set(runtime) & set(gpu)
    assert all(runtime[name] == gpu[name] for name in shared), "the two locks disagree"
    full = _lock("requirements.lock")
    assert all(full.get(name) == version for name, version in runtime.items()), "runtime lock is not a subset"


def test_the_gpu_class_scales_to_at_most_max_containers(tmp_path):
    code = ("from capbot.modal import app as modal_app\nfrom tests.modal_support import registered\n"
            "print(registered(modal_app.app)['GpuCaptioner.*'].max_containers)\n")
    default = _python(code, _offline_env(tmp_path), tmp_path)
    chosen = _python(code, _offline_env(tmp_path, CAPBOT_MODAL_MAX_CONTAINERS="3"), tmp_path)
    assert default.returncode == 0 and chosen.returncode == 0, default.stderr + chosen.stderr
    assert (default.stdout.strip(), chosen.stdout.strip()) == ("5", "3")


@pytest.mark.parametrize("name, value", [("modal_call_timeout_s", 141.0), ("modal_max_containers", 0)])
def test_settings_refuse_a_wait_past_the_web_limit_and_an_empty_gpu_pool(name, value):
    from capbot.settings import get_settings
    from storage.errors import UserError

    with pytest.raises((UserError, ValueError)):
        get_settings(**{name: value})


def test_the_plan_ships_a_small_database_pool_to_every_container(monkeypatch):
    from capbot.settings import get_settings

    assert ModalPlan.from_settings(get_settings()).db_pool_size == 2
    assert ModalPlan.from_settings(get_settings(modal_db_pool_size=4)).db_pool_size == 4


def test_the_runtime_lock_is_what_make_lock_writes_now():
    from tools.locks import runtime_pins

    now = {name.lower().replace("_", "-"): version for name, version in runtime_pins().items()}
    assert _lock("requirements-runtime.lock") == now, "run `make lock`"


def test_capbot_runs_with_only_what_the_image_installs(tmp_path, tiny_model_dir):
    """Every distribution the two locks leave out (test tools, benchmark-only packages) is made unimportable;
    capbot's serving, training and Modal modules still import, and the tiny model captions."""
    from importlib.metadata import packages_distributions

    kept = set(_lock("requirements-runtime.lock")) | set(_lock("requirements-gpu.lock")) | {"capbot"}
    hidden = sorted(module for module, dists in packages_distributions().items()
                    if not module.startswith("_") and "." not in module
                    and not any(d.lower().replace("_", "-") in kept for d in dists)
                    and not any(d.lower() in ("pip", "setuptools", "wheel") for d in dists))
    assert {"pytest", "skimage", "playwright", "accelerate"} <= set(hidden)
    code = (
        "import sys, json\n"
        f"for name in {hidden!r}: sys.modules[name] = None  # as if not installed\n"
        "import capbot.modal.app, capbot.app, capbot.serve, training.train, training.retrain, training.evaluate\n"
        "from inference.captioner import LocalCaptioner\nfrom inference.spec import CaptionerSpec\nfrom PIL import Image\n"
        f"captioner = LocalCaptioner({str(tiny_model_dir)!r}, CaptionerSpec(device='cpu'))\n"
        "print(json.dumps(bool(captioner.caption([Image.new('RGB', (64, 48), 'red')])[0].text)))\n"
    )
    done = _python(code, _offline_env(tmp_path), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "true"
