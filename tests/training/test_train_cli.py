"""`capbot train` end to end (evaluation, TensorBoard logs, registry) and `capbot tensorboard` serving them."""

from __future__ import annotations

import json
import urllib.request

import pytest

from capbot.cli import main
from training.tb import serve_tensorboard

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cli_run(tiny_model_dir, synthetic_dataset, tmp_path_factory):
    """One short `capbot train` run with a SQLite database; returns (exit code, stdout, out dir, db url)."""
    root = tmp_path_factory.mktemp("cli_train")
    db_url = f"sqlite:///{root / 'capbot.db'}"
    from storage import db

    db.upgrade(db_url)
    out = root / "runs" / "first"
    monkey = pytest.MonkeyPatch()
    monkey.setenv("CAPBOT_DATABASE_URL", db_url)
    monkey.setenv("CAPBOT_DATA_DIR", str(root))
    import io
    from contextlib import redirect_stdout

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main(["train", "--model", str(tiny_model_dir), "--data", str(synthetic_dataset.out_dir), "--out", str(out),
                     "--steps", "6", "--batch-size", "8", "--warmup", "2", "--eval-every", "3", "--eval-limit", "6", "--json"])
    monkey.undo()
    return code, buffer.getvalue(), out, db_url


def test_cli_trains_evaluates_and_registers_a_candidate(cli_run, tiny_model_dir):
    code, stdout, out, db_url = cli_run
    assert code == 0
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["steps"] == 6 and result["registered"] is True
    assert result["best_step"] in (3, 6) and set(result["metrics"]) >= {"bleu_4", "cider", "rouge_l"}
    meta = json.loads((out / "model" / "capbot.json").read_text())
    assert meta["version"] == result["version"]
    assert meta["extra"]["metrics"]["cider"] == pytest.approx(result["metrics"]["cider"])
    from storage import db, registry

    engine = db.create_engine_for(db_url)
    with db.session_scope(engine) as session:
        version = registry.get_version(session, result["version"])
    engine.dispose()
    assert version.status == "candidate" and version.location == str((out / "model").resolve())
    assert version.parent_id == json.loads((tiny_model_dir / "capbot.json").read_text())["version"]
    assert version.metrics["cider"] == pytest.approx(result["metrics"]["cider"])


def test_tensorboard_logs_hold_loss_lr_throughput_metrics_and_samples(cli_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, _, out, _ = cli_run
    events = EventAccumulator(str(out / "tb"), size_guidance={"images": 0, "scalars": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/samples_per_second", "eval/cider", "eval/bleu_4"} <= scalars
    assert [e.step for e in events.Scalars("eval/cider")] == [3, 6]
    assert [e.step for e in events.Images("eval/samples")] == [3, 6]
    lrs = [e.value for e in events.Scalars("train/lr")]
    assert lrs == sorted(lrs, reverse=True)  # logged after warmup: decaying


def test_tensorboard_command_serves_the_runs(cli_run):
    _, _, out, _ = cli_run
    url, _wait = serve_tensorboard(out.parent, port=0)
    with urllib.request.urlopen(url.rstrip("/") + "/data/runs", timeout=30) as response:
        runs = json.loads(response.read())
    assert any("first" in run for run in runs)


def test_tensorboard_without_logs_is_a_user_error(tmp_path, capsys):
    assert main(["tensorboard", "--logdir", str(tmp_path / "nothing")]) == 2
    assert "no training logs" in capsys.readouterr().err


def test_cli_reports_missing_data_without_a_traceback(tmp_path, tiny_model_dir, capsys):
    code = main(["train", "--model", str(tiny_model_dir), "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err


def test_unmigrated_database_is_refused_before_training(tmp_path, tiny_model_dir, synthetic_dataset, monkeypatch, capsys):
    monkeypatch.setenv("CAPBOT_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    code = main(["train", "--model", str(tiny_model_dir), "--data", str(synthetic_dataset.out_dir), "--out", str(tmp_path / "o")])
    assert code == 2 and "capbot db upgrade" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
