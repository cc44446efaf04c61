"""The storage CLI end to end through `capbot.cli.main`, on a SQLite file and a Postgres schema."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone

import pytest

from capbot.cli import main
from storage import corrections, registry, runs
from storage.blobs import LocalBlobStore
from storage.db import create_engine_for, session_scope
from tests.storage.helpers import make_caption

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def env(database_url, tmp_path, monkeypatch):
    """Settings for the CLI: the test database and a blob directory, via the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAPBOT_DATABASE_URL", database_url)
    monkeypatch.setenv("CAPBOT_DATA_DIR", str(tmp_path / "data"))
    return database_url


def _engine(url):
    return create_engine_for(url)


# Every command that uses the database, as a new user would first run it (before `capbot db upgrade`).
DATABASE_COMMANDS = [
    ["models", "list"], ["models", "promote", "v1"], ["models", "rollback"], ["feedback", "export", "--out", "f.jsonl"],
    ["forget-user", "U1", "--yes"], ["retrain", "--dry-run"],
]


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=" ".join)
def test_commands_migrate_the_embedded_database_and_refuse_an_unmigrated_server(env, command, capsys):
    assert main(["db", "current"]) == 0
    assert "needs `capbot db upgrade`" in capsys.readouterr().out  # db current only looks
    code = main(command)
    err = capsys.readouterr().err
    assert main(["db", "current"]) == 0
    state = capsys.readouterr().out
    if env.startswith("sqlite"):  # created and migrated on first use, as `capbot run` does
        assert "capbot db upgrade" not in err and "up to date" in state
    else:  # a server database is migrated on purpose only
        assert code == 2 and err.splitlines()[-1].startswith("error: the database schema is at nothing")
        assert err.splitlines()[-1].endswith("run `capbot db upgrade`") and "needs `capbot db upgrade`" in state


def test_upgrade_then_models_promote_list_rollback(env, capsys):
    assert main(["db", "upgrade"]) == 0
    assert main(["db", "upgrade"]) == 0  # again: nothing to do
    assert "is at revision" in capsys.readouterr().out
    assert main(["models", "list"]) == 0
    assert "no model versions" in capsys.readouterr().out
    engine = _engine(env)
    with session_scope(engine) as session:  # retraining runs that renamed circles, then squares
        for version_id, parent, old, new in (("v1", None, "circle", "ball"), ("v2", "v1", "square", "box")):
            rename = {"old": old, "new": new, "support": 9, "uses": 9, "users": 3}
            registry.register_version(session, version_id=version_id, location=f"/m/{version_id}", parent_id=parent,
                                      metrics={"cider": 0.5, "renames": [rename]})
    engine.dispose()
    assert main(["models", "promote", "v1"]) == 0
    assert main(["models", "promote", "v2"]) == 0
    captured = capsys.readouterr()
    assert "active model version: v2 (was v1)" in captured.out
    assert "warning: /m/v2 does not exist" in captured.err
    assert main(["models", "list"]) == 0
    table = capsys.readouterr().out
    assert "active" in table and "retired" in table and "cider=0.5" in table
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {v["id"]: v["status"] for v in listed} == {"v1": "retired", "v2": "active"}
    assert main(["models", "rollback"]) == 0
    out = capsys.readouterr().out
    assert "rolled back v2 -> active model version: v1" in out
    assert "renames the next retraining applies to the base data: 'circle' -> 'ball'\n" in out
    assert main(["models", "promote", "nope"]) == 2
    assert "no model version 'nope'" in capsys.readouterr().err


def _seed_feedback(url, blob_dir):
    blobs = LocalBlobStore(blob_dir)
    engine = _engine(url)
    with session_scope(engine) as session:
        dog = make_caption(session, blobs, data=b"dog", user_id="U1")
        corrections.record_correction(session, caption_id=dog.id, user_id="U2", text="a brown dog, 'quoted'", now=T0)
        run = runs.start_run(session, now=datetime(2026, 2, 1, tzinfo=timezone.utc))
        runs.finish_run(session, run.id, status="promoted")
        cat = make_caption(session, blobs, data=b"cat", text="a cat", user_id="U1")
        corrections.record_correction(session, caption_id=cat.id, user_id="U3", text="a tabby cat",
                                      now=datetime(2026, 3, 1, tzinfo=timezone.utc))
    engine.dispose()
    return blobs, dog, cat


@pytest.mark.parametrize("columns", [80, 120])
def test_models_list_shows_whole_version_ids(env, capsys, monkeypatch, columns):
    # The ids `capbot models promote` needs, as training names them, beside long metrics and locations.
    ids = ["20261207-105805-e80c1a", "20261208-093012-4b7d2f"]
    engine = _engine(env)
    assert main(["db", "upgrade"]) == 0
    with session_scope(engine) as session:
        for version_id, parent in zip(ids, [None, ids[0]]):
            metrics = {"cider": 0.8123, "bleu_4": 0.31, "rouge_l": 0.52, "meteor": 0.27, "feedback_cider": 1.234}
            registry.register_version(session, version_id=version_id, parent_id=parent, metrics=metrics,
                                      location=f"/srv/capbot/data/models/{version_id}/with/a/long/path")
    engine.dispose()
    monkeypatch.setenv("COLUMNS", str(columns))
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    table = capsys.readouterr().out
    assert all(version_id in table for version_id in ids), table
    assert "…" not in table  # nothing cut short
    assert all(line[-1] in "┓┃┩│┘" for line in table.splitlines() if line), table  # nor cut at the edge


def test_feedback_export_jsonl_and_csv(env, tmp_path, capsys):
    assert main(["db", "upgrade"]) == 0
    blobs, dog, cat = _seed_feedback(env, tmp_path / "data" / "blobs")
    out = tmp_path / "out" / "feedback.jsonl"
    assert main(["feedback", "export", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["image_sha256"], r["caption"], r["model_caption"]) for r in rows] == [
        (dog.image_sha256, "a brown dog, 'quoted'", dog.text), (cat.image_sha256, "a tabby cat", "a cat")]
    assert rows[0]["image_path"] == str(blobs.path(dog.image_sha256))
    assert [(r["platform"], r["user_id"]) for r in rows] == [("slack", "U2"), ("slack", "U3")]  # who corrected it
    assert main(["feedback", "export", "--out", str(tmp_path / "f.csv"), "--since-last-run"]) == 0
    with open(tmp_path / "f.csv", newline="") as handle:
        assert [(r["caption"], r["model_caption"]) for r in csv.DictReader(handle)] == [("a tabby cat", "a cat")]
    assert main(["feedback", "export", "--out", str(tmp_path / "g.out"), "--format", "csv",
                 "--since", "2026-02-15"]) == 0
    assert "wrote 1 feedback row since 2026-02-15" in capsys.readouterr().out
    assert main(["feedback", "export", "--out", str(tmp_path / "f.txt")]) == 2
    assert main(["feedback", "export", "--out", str(out), "--since", "yesterday"]) == 2
    assert "ISO 8601" in capsys.readouterr().err


def test_feedback_export_reads_only_consented_data(env, tmp_path, capsys, monkeypatch):
    assert main(["db", "upgrade"]) == 0
    _seed_feedback(env, tmp_path / "data" / "blobs")  # captions made outside any community: the default decides
    monkeypatch.setenv("CAPBOT_TRAINING_CONSENT_DEFAULT", "false")
    out = tmp_path / "none.jsonl"
    assert main(["feedback", "export", "--out", str(out)]) == 0
    assert out.read_text() == "" and "wrote 0 feedback rows" in capsys.readouterr().out


def test_feedback_export_resolves_several_users_and_sets_junk_aside(env, tmp_path, capsys, monkeypatch):
    # The same screening as retraining: consensus per image, copy-paste spam and the per-user cap.
    assert main(["db", "upgrade"]) == 0
    blobs = LocalBlobStore(tmp_path / "data" / "blobs")
    engine = _engine(env)
    with session_scope(engine) as session:
        ball = make_caption(session, blobs, data=b"ball", text="a red circle")
        for user, text in (("U1", "a red ball"), ("U2", "A red ball."), ("U3", "a blue ball")):
            corrections.record_correction(session, caption_id=ball.id, user_id=user, text=text)
        for n, said in enumerate(("a dog on a beach", "a cat on a sofa", "two men riding horses", "a bowl of soup",
                                  "a red bus in a street")):
            caption = make_caption(session, blobs, data=f"other {n}".encode(), text=said)
            corrections.record_correction(session, caption_id=caption.id, user_id="U9", text="follow my channel")
    engine.dispose()
    out = tmp_path / "feedback.jsonl"
    assert main(["feedback", "export", "--out", str(out)]) == 0
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (row["image_sha256"], row["caption"], row["users"]) == (ball.image_sha256, "A red ball.", 3)
    assert row["supporters"] == "slack:U1 slack:U2"
    said = " ".join(capsys.readouterr().out.split())
    assert "wrote 1 feedback row to" in said and "(from 8 corrections by 2 agreeing users;" in said
    assert "set aside: 5 copy-paste spam, 0 beyond the per-user cap, 1 outvoted, 0 disputed images" in said
    monkeypatch.setenv("CAPBOT_RETRAIN_SPAM_MIN_IMAGES", "6")
    monkeypatch.setenv("CAPBOT_RETRAIN_MAX_IMAGES_PER_USER", "2")
    assert main(["feedback", "export", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 3  # no longer spam: two of U9's corrections, over the cap of 2


def test_forget_user(env, tmp_path, capsys, monkeypatch):
    import io

    assert main(["db", "upgrade"]) == 0
    blobs, dog, _cat = _seed_feedback(env, tmp_path / "data" / "blobs")
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert main(["forget-user", "U1"]) == 2
    assert "nothing deleted" in capsys.readouterr().err
    assert blobs.exists(dog.image_sha256)
    assert main(["forget-user", "U1", "--platform", "slack", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "2 corrections, 2 captions, 2 images (2 blobs) deleted" in out
    assert not blobs.exists(dog.image_sha256)
    assert main(["forget-user", "U1", "--platform", "irc", "--yes"]) == 2
