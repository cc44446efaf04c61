"""`capbot train` end to end (evaluation, TensorBoard logs, registry) and `capbot tensorboard` serving them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from capbot.cli import main
from training.tb import serve_tensorboard

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cli_run(tiny_model_dir, synthetic_dataset, tmp_path_factory):
    """One short `capbot train` run against a new SQLite database; returns (exit code, stdout, model dir, run dir, db url)."""
    root = tmp_path_factory.mktemp("cli_train")
    db_url = f"sqlite:///{root / 'capbot.db'}"  # not migrated: the command does that on first use
    out = root / "models" / "first"
    monkey = pytest.MonkeyPatch()
    monkey.setenv("CAPBOT_DATABASE_URL", db_url)
    monkey.setenv("CAPBOT_DATA_DIR", str(root))
    import io
    from contextlib import redirect_stdout

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main(["train", "--model", str(tiny_model_dir), "--data", str(synthetic_dataset.out_dir), "--out", str(out),
                     "--steps", "6", "--batch-size", "8", "--warmup-steps", "2", "--eval-every", "3", "--eval-limit", "6",
                     "--json"])
    monkey.undo()
    return code, buffer.getvalue(), out, root / "runs" / "first", db_url


def test_cli_trains_evaluates_and_registers_a_candidate(cli_run, tiny_model_dir):
    code, stdout, out, run_dir, db_url = cli_run
    assert code == 0
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["steps"] == 6 and result["registered"] is True and result["model_dir"] == str(out)
    assert result["best_step"] in (3, 6) and set(result["metrics"]) >= {"bleu_4", "cider", "rouge_l"}
    meta = json.loads((out / "capbot.json").read_text())
    assert meta["version"] == result["version"]
    assert meta["extra"]["metrics"]["cider"] == pytest.approx(result["metrics"]["cider"])
    # --out is the model directory the other commands take; checkpoints went to the run directory.
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir())[-1] == "step-0000006"
    from storage import db, registry

    engine = db.create_engine_for(db_url)
    with db.session_scope(engine) as session:
        version = registry.get_version(session, result["version"])
    engine.dispose()
    assert version.status == "candidate" and version.location == str(out.resolve())
    assert version.parent_id == json.loads((tiny_model_dir / "capbot.json").read_text())["version"]
    assert version.metrics["cider"] == pytest.approx(result["metrics"]["cider"])


def test_tensorboard_logs_hold_loss_lr_throughput_metrics_and_samples(cli_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, _, _, run_dir, _ = cli_run
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0, "scalars": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/samples_per_second", "eval/cider", "eval/bleu_4"} <= scalars
    assert [e.step for e in events.Scalars("eval/cider")] == [3, 6]
    assert [e.step for e in events.Images("eval/samples")] == [3, 6]
    lrs = [e.value for e in events.Scalars("train/lr")]
    assert lrs == sorted(lrs, reverse=True)  # logged after warmup: decaying


def test_tensorboard_command_serves_the_runs(cli_run):
    _, _, _, run_dir, _ = cli_run
    url, _wait = serve_tensorboard(run_dir.parent, port=0)  # the default: CAPBOT_DATA_DIR/runs
    with urllib.request.urlopen(url.rstrip("/") + "/data/runs", timeout=30) as response:
        runs = json.loads(response.read())
    assert any("first" in run for run in runs)


def test_tensorboard_command_shows_its_url_without_burying_it(cli_run, tmp_path):
    _, _, _, run_dir, _ = cli_run
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CAPBOT_")}
    process = subprocess.Popen([sys.executable, "-m", "capbot", "tensorboard", "--logdir", str(run_dir.parent),
                                "--port", "0"], cwd=tmp_path, env=environ, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        said = process.stdout.readline()
        url = said.split()[-1] if said.startswith("TensorBoard") else None
        assert url and url.startswith("http://127.0.0.1:"), said
        # Once it answers with the run, it has read the logdir: the reload that used to log ~11 info lines.
        with urllib.request.urlopen(url.rstrip("/") + "/data/runs", timeout=30) as response:
            assert any("first" in run for run in json.loads(response.read()))
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=30)
    assert said.strip() == f"TensorBoard: {url}" and "Ctrl" not in url
    assert "tensorboard:" not in errors, errors


def test_tensorboard_without_logs_is_a_user_error(tmp_path, capsys):
    assert main(["tensorboard", "--logdir", str(tmp_path / "nothing")]) == 2
    assert "no training logs" in capsys.readouterr().err


def test_cli_reports_missing_data_without_a_traceback(tmp_path, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setenv("CAPBOT_DATA_DIR", str(tmp_path))
    code = main(["train", "--model", str(tiny_model_dir), "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"error: dataset directory {tmp_path / 'missing'} does not exist" and "Traceback" not in err


@pytest.mark.parametrize("option, message", [
    (["--steps", "0", "--lr", "-1"], "error: invalid training arguments: steps, lr"),
    (["--stop-at", "9", "--steps", "5"], "error: stop_at must be between 1 and steps (5)"),
    (["--precision", "fp16"], "Invalid value for '--precision'"),
])
def test_bad_option_values_are_one_clear_error(option, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAPBOT_DATA_DIR", str(tmp_path))
    code = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), *option])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "capbot.db").exists()  # refused before anything was written


def test_every_training_argument_is_an_option_with_its_default_and_help():
    import dataclasses

    import typer.main

    from capbot.cli.root import app
    from capbot.cli.train_cmds import FROM_SETTINGS, REQUIRED
    from training.args import TrainArgs

    command = typer.main.get_command(app).commands["train"]
    options = {p.name: p for p in command.params}
    for field in dataclasses.fields(TrainArgs):
        if not field.metadata["cli"]:
            assert field.name not in options
            continue
        option = options[field.name]
        assert option.opts[0] == "--" + field.name.replace("_", "-") and option.help.startswith(field.metadata["help"])
        if field.name in FROM_SETTINGS:
            assert option.default is None and FROM_SETTINGS[field.name][0] in option.help
        elif field.name not in REQUIRED and field.default is not dataclasses.MISSING:
            assert option.default == field.default, field.name
    assert set(options) - {f.name for f in dataclasses.fields(TrainArgs)} == {"register", "as_json"}


@pytest.mark.postgres
def test_an_unmigrated_server_database_is_refused_before_training(tmp_path, tiny_model_dir, synthetic_dataset,
                                                                   postgres_url, monkeypatch, capsys):
    monkeypatch.setenv("CAPBOT_DATABASE_URL", postgres_url)  # an empty schema: nobody ran `capbot db upgrade`
    monkeypatch.setenv("CAPBOT_DATA_DIR", str(tmp_path))
    code = main(["train", "--model", str(tiny_model_dir), "--data", str(synthetic_dataset.out_dir), "--out", str(tmp_path / "o")])
    assert code == 2 and "capbot db upgrade" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "runs").exists()


def test_resume_finds_the_checkpoints_of_the_same_out(tiny_model_dir, synthetic_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAPBOT_DATA_DIR", str(tmp_path))
    common = ["train", "--model", str(tiny_model_dir), "--data", str(synthetic_dataset.out_dir), "--out",
              str(tmp_path / "models" / "shapes"), "--steps", "4", "--batch-size", "4", "--val-split", "none",
              "--no-register", "--no-tensorboard", "--json"]
    assert main([*common, "--stop-at", "2"]) == 0
    assert capsys.readouterr().out == ""  # stopped early: no model yet
    assert main([*common, "--resume"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["steps"] == 4 and result["model_dir"] == str(tmp_path / "models" / "shapes")
    assert (tmp_path / "runs" / "shapes" / "checkpoints" / "step-0000002").is_dir()
    assert main([*common]) == 2  # a fresh run would replace that model
    assert "already exists" in capsys.readouterr().err
