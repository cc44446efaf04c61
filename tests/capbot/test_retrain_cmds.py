"""`capbot retrain` end to end through the CLI entry point (settings from the environment)."""

from __future__ import annotations

import json

import pytest

from capbot.cli import main
from storage import db
from training.data.coco import load_split
from training.lock import FileRunLock

from tests.training.retrain_support import add_feedback, open_store


def _env(monkeypatch, tmp_path, tiny_model_dir, base_data):
    url = f"sqlite:///{tmp_path / 'data' / 'capbot.db'}"
    monkeypatch.setenv("CAPBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CAPBOT_DATABASE_URL", url)
    monkeypatch.setenv("CAPBOT_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("CAPBOT_RETRAIN_BASE_DATA", str(base_data))
    engine, blobs = open_store(url, tmp_path / "data")
    return engine, blobs


def test_retrain_cli_stops_early_then_dry_runs_then_refuses_under_the_lock(monkeypatch, tmp_path, capsys, tiny_model_dir, synthetic_dataset):
    engine, blobs = _env(monkeypatch, tmp_path, tiny_model_dir, synthetic_dataset.out_dir)
    test = load_split(synthetic_dataset.out_dir, "test")
    add_feedback(engine, blobs, [(i.path, "a shape", i.captions[0] + " indeed") for i in test.items])
    engine.dispose()

    assert main(["retrain"]) == 0  # default minimum is 20 corrected images
    out = capsys.readouterr().out
    assert "skipped" in out and "12 new" in out and "at least 20" in out

    assert main(["retrain", "--min-feedback", "5", "--dry-run", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "dry_run" and result["data_counts"]["feedback_new"] == 12

    with FileRunLock(tmp_path / "data" / "runs" / "retrain.lock"):
        assert main(["retrain", "--min-feedback", "5"]) == 2
    assert "another retraining run is already in progress" in capsys.readouterr().err


@pytest.mark.postgres
def test_retrain_cli_needs_a_migrated_server_database(monkeypatch, tmp_path, capsys, postgres_url):
    monkeypatch.setenv("CAPBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CAPBOT_DATABASE_URL", postgres_url)  # SQLite would be migrated on first use
    assert main(["retrain"]) == 2
    assert "capbot db upgrade" in capsys.readouterr().err


def test_retrain_cli_reports_renames_and_can_switch_them_off(monkeypatch, tmp_path, capsys, tiny_model_dir, synthetic_dataset):
    engine, blobs = _env(monkeypatch, tmp_path, tiny_model_dir, synthetic_dataset.out_dir)
    test = load_split(synthetic_dataset.out_dir, "test")
    add_feedback(engine, blobs, [(i.path, f"a circle number {n}", f"a ball, number {n + 1}") for n, i in enumerate(test.items)])
    engine.dispose()

    assert main(["retrain", "--min-feedback", "5", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "renamed in base references: 'circle' -> 'ball'" in out
    assert main(["retrain", "--min-feedback", "5", "--dry-run", "--no-renames", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["renames"] == [] and result["data_counts"]["renames"] == 0
