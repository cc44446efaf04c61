"""`capbot retrain` end to end through the CLI entry point (settings from the environment)."""

from __future__ import annotations

import io
import json

import pytest
import torch
from PIL import Image

from capbot.captioning import captioner_spec
from capbot.cli import main
from capbot.app import RetrainOptions, retrain_config
from capbot.cli.retrain_cmds import _print_result
from capbot.settings import get_settings
from inference.images import ImageError
from storage import db
from training.data.coco import load_split
from training.data.renames import Rename
from training.gate import Comparison, ModelScores, Scores, decide_promotion
from training.inherited_renames import InheritedRenames
from training.lock import FileRunLock
from training.retrain import DataCounts, RetrainResult, default_captioner_factory

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


def test_the_rename_users_setting_reaches_the_run(monkeypatch, tmp_path, capsys, tiny_model_dir, synthetic_dataset):
    engine, blobs = _env(monkeypatch, tmp_path, tiny_model_dir, synthetic_dataset.out_dir)
    test = load_split(synthetic_dataset.out_dir, "test")
    add_feedback(engine, blobs, [(i.path, f"a circle number {n}", f"a ball, number {n + 1}") for n, i in enumerate(test.items)])
    engine.dispose()  # three users corrected these

    monkeypatch.setenv("CAPBOT_RETRAIN_RENAME_MIN_USERS", "4")
    assert main(["retrain", "--min-feedback", "5", "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["renames"] == []
    monkeypatch.setenv("CAPBOT_RETRAIN_RENAME_MIN_USERS", "3")
    assert main(["retrain", "--min-feedback", "5", "--dry-run", "--json"]) == 0
    (rename,) = json.loads(capsys.readouterr().out)["renames"]
    assert (rename["old"], rename["new"], rename["users"]) == ("circle", "ball", 3)


def test_settings_reach_the_retrain_config_and_its_captioner_in_one_step(tmp_path, tiny_model_dir):
    settings = get_settings(data_dir=tmp_path / "data", model=str(tiny_model_dir), device="cpu", dtype="bfloat16",
                            precision="exact", max_image_pixels=1000, retrain_base_data=tmp_path / "base",
                            retrain_min_feedback=7, retrain_cider_tolerance=0.1, retrain_rename_min_users=5)
    config = retrain_config(settings, engine=None)
    assert config.captioner == captioner_spec(settings)  # the gate scores what the server serves
    spec = config.captioner
    assert (spec.device, spec.dtype, spec.precision, spec.max_image_pixels) == ("cpu", "bfloat16", "exact", 1000)
    assert (config.base_model, config.base_data, config.min_feedback) == (str(tiny_model_dir), tmp_path / "base", 7)
    assert config.cider_tolerance == 0.1 and config.rename_rules.min_users == 5
    assert config.runs_dir == tmp_path / "data" / "runs" and config.epochs == 3  # RetrainConfig's default

    chosen = retrain_config(settings, None, RetrainOptions(cider_tolerance=0.0, epochs=1, renames=False, dry_run=True))
    assert (chosen.cider_tolerance, chosen.epochs, chosen.rename_rules, chosen.dry_run) == (0.0, 1, None, True)

    captioner = default_captioner_factory(config)(str(tiny_model_dir))
    try:
        assert captioner.engine.device.type == "cpu" and captioner.engine.dtype == torch.bfloat16
        small, large = io.BytesIO(), io.BytesIO()
        Image.new("RGB", (30, 30), "red").save(small, format="PNG")  # 900 pixels
        Image.new("RGB", (40, 40), "red").save(large, format="PNG")  # 1,600 pixels
        assert len(captioner.caption([small.getvalue()])) == 1
        with pytest.raises(ImageError) as refused:
            captioner.caption([large.getvalue()])
        assert refused.value.reason == "too_many_pixels"
    finally:
        captioner.close()


def test_the_printed_outcome_names_it_once(capsys):
    better = ModelScores(base=Scores(2.0, 0.5, 0.5), feedback=Scores(1.0, 0.5, 0.5))
    worse = ModelScores(base=Scores(2.0, 0.5, 0.5), feedback=Scores(0.5, 0.4, 0.4))
    comparison = Comparison(candidate=better, active=worse)
    decision = decide_promotion(comparison, cider_tolerance=0.05)
    _print_result(RetrainResult("promoted", decision.reason, DataCounts(feedback_new=30, feedback=20),
                                metrics=comparison, gate=decision, candidate_version="v2"))
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("promoted: better on held-out feedback (held-out feedback CIDEr 0.500 -> 1.000)")
    assert "promoted: promoted" not in out and out.count("promoted") == 1
    assert "data: feedback_new=30, feedback=20," in out and "candidate version: v2" in out


def test_the_printed_result_names_the_renames_learned_in_earlier_rounds_and_this_ones(capsys):
    earlier = [InheritedRenames("v1", 1, (Rename("circle", "ball", 9, 9, 4), Rename("circles", "balls", 6, 7, 3))),
               InheritedRenames("v2", 2, (Rename("square", "box", 8, 8, 5),))]
    _print_result(RetrainResult("dry_run", "dry run", DataCounts(feedback_new=30, renames=1, inherited_renames=3),
                                renames=[Rename("triangle", "wedge", 7, 8, 3)], inherited_renames=earlier))
    lines = capsys.readouterr().out.splitlines()
    renamed = [line for line in lines if line.startswith("renamed in base references")]
    assert renamed == [
        "renamed in base references (learned by version v1): 'circle' -> 'ball'",
        "renamed in base references (learned by version v1): 'circles' -> 'balls'",
        "renamed in base references (learned by version v2): 'square' -> 'box'",
        "renamed in base references: 'triangle' -> 'wedge' (7 of 8 corrections, 3 users)",
    ]
    assert any("renames=1, inherited_renames=3" in line for line in lines)


def test_the_embedded_schedule_runs_retraining_from_the_same_settings(monkeypatch, tmp_path, tiny_model_dir, synthetic_dataset):
    from capbot.cli.run_cmds import _retrain_job

    engine, blobs = _env(monkeypatch, tmp_path, tiny_model_dir, synthetic_dataset.out_dir)
    test = load_split(synthetic_dataset.out_dir, "test")
    add_feedback(engine, blobs, [(i.path, "a shape", i.captions[0] + " indeed") for i in test.items])
    engine.dispose()

    assert _retrain_job(get_settings()) is None  # no CAPBOT_RETRAIN_CRON: no schedule
    job = _retrain_job(get_settings(retrain_cron="0 3 * * 0", retrain_min_feedback=13))
    result = job()
    assert result.status == "skipped" and "12 new" in result.message and "at least 13" in result.message


def test_the_junk_settings_reach_the_run_and_set_asides_are_printed(monkeypatch, tmp_path, capsys, tiny_model_dir,
                                                                    synthetic_dataset):
    engine, blobs = _env(monkeypatch, tmp_path, tiny_model_dir, synthetic_dataset.out_dir)
    test = load_split(synthetic_dataset.out_dir, "test")
    add_feedback(engine, blobs, [(i.path, "a shape", i.captions[0] + " indeed") for i in test.items])  # 3 users
    engine.dispose()
    config = retrain_config(get_settings(retrain_min_users=4, retrain_max_images_per_user=3,
                                         retrain_spam_min_images=7), engine=None)
    assert (config.min_users, config.screen_rules.max_images_per_user, config.screen_rules.spam_min_images) == (4, 3, 7)

    monkeypatch.setenv("CAPBOT_RETRAIN_MAX_IMAGES_PER_USER", "3")
    assert main(["retrain", "--min-feedback", "5", "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "over_user_cap=3" in out and "users=3" in out
    assert "set aside: 3 correction(s) beyond a user's per-run cap" in out
    monkeypatch.setenv("CAPBOT_RETRAIN_MIN_USERS", "4")
    assert main(["retrain", "--min-feedback", "5"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("not_promoted: refused before training: the feedback left after screening comes from 3 "
                          "distinct user(s); at least 4 needed")
