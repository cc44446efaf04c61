"""`capbot modal deploy | upload-model | pull-model` as a new user meets them: without Modal credentials,
from outside a checkout, with a bad schedule or a directory that is not a model. One line each, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from capbot.cli import main
from storage.errors import UserError
from capbot.modal.deploy import check_checkout

ROOT = Path(__file__).resolve().parents[2]
NO_CREDENTIALS = ("error: no Modal credentials: run `modal token new`, or set MODAL_TOKEN_ID and "
                  "MODAL_TOKEN_SECRET")


def _capbot(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "CAPBOT_"))}
    (tmp_path / "home").mkdir(exist_ok=True)
    environ.update(HOME=str(tmp_path / "home"), **env)
    return subprocess.run([sys.executable, "-m", "capbot", "modal", *args], cwd=tmp_path, env=environ,
                          capture_output=True, text=True, timeout=180)


def test_deploy_without_credentials_says_what_is_missing(tmp_path):
    done = _capbot(tmp_path, "deploy")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == NO_CREDENTIALS
    assert "Traceback" not in done.stderr


def test_upload_without_credentials_says_what_is_missing(tmp_path, tiny_model_dir):
    done = _capbot(tmp_path, "upload-model", str(tiny_model_dir), "--activate")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [NO_CREDENTIALS]


def test_a_bad_schedule_is_refused_before_modal_is_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAPBOT_MODAL_RETRAIN_CRON", "99 3 * * 0")
    assert main(["modal", "deploy"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "99" in error and "Modal" not in error


def test_a_schedule_without_five_fields_is_a_settings_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAPBOT_MODAL_RETRAIN_CRON", "every sunday")
    assert main(["modal", "deploy"]) == 2
    assert capsys.readouterr().err.startswith("error: invalid settings: CAPBOT_MODAL_RETRAIN_CRON: ")


def test_upload_refuses_a_directory_that_is_not_a_model(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    assert main(["modal", "upload-model", str(tmp_path / "weights")]) == 2
    assert "has no capbot.json" in capsys.readouterr().err


def test_deploy_needs_a_checkout(tmp_path):
    assert check_checkout(ROOT) == ROOT
    with pytest.raises(UserError) as refused:
        check_checkout(tmp_path)
    assert "pyproject.toml, README.md, requirements-gpu.lock, requirements-runtime.lock" in refused.value.message


def test_capbot_run_with_the_modal_captioner_stops_at_start_without_credentials(tmp_path):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "CAPBOT_"))}
    (tmp_path / "home").mkdir()
    environ.update(HOME=str(tmp_path / "home"), CAPBOT_CAPTIONER="modal", CAPBOT_DATA_DIR=str(tmp_path / "data"),
                   CAPBOT_PORT="0")
    done = subprocess.run([sys.executable, "-m", "capbot", "run"], cwd=tmp_path, env=environ, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == NO_CREDENTIALS
