"""`capbot feedback queue` end to end through `capbot.cli.main`, on a SQLite file and a Postgres schema."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from capbot.cli import main
from storage import corrections
from storage.blobs import LocalBlobStore
from storage.db import create_engine_for, session_scope
from tests.storage.helpers import make_caption

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


@pytest.fixture
def env(database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAPBOT_DATABASE_URL", database_url)
    monkeypatch.setenv("CAPBOT_DATA_DIR", str(tmp_path / "data"))
    assert main(["db", "upgrade"]) == 0
    return database_url


def _seed(url, blob_dir):
    blobs = LocalBlobStore(blob_dir)
    engine = create_engine_for(url)
    with session_scope(engine) as session:
        sure = make_caption(session, blobs, data=b"sure", text="a red circle", confidence=0.9, now=T0)
        web = make_caption(session, blobs, data=b"web", text="a red square", confidence=0.4, platform="web",
                           user_id="ip:abc", now=T0)
        disputed = make_caption(session, blobs, data=b"disputed", text="a blue square", confidence=0.6,
                                now=datetime(2026, 3, 5, tzinfo=timezone.utc))
        for user, text in (("U2", "a blue circle"), ("U3", "a green circle")):
            corrections.record_correction(session, caption_id=disputed.id, user_id=user, text=text,
                                          now=datetime(2026, 3, 5, tzinfo=timezone.utc))
    engine.dispose()
    return blobs, sure, web, disputed


def test_queue_lists_the_most_uncertain_and_disputed_images_first(env, tmp_path, capsys, monkeypatch):
    blobs, sure, web, disputed = _seed(env, tmp_path / "data" / "blobs")
    capsys.readouterr()
    assert main(["feedback", "queue", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["caption_id"] for r in rows] == [disputed.id, web.id, sure.id]
    assert rows[0]["corrections"] and set(rows[0]["corrections"]) == {"a blue circle", "a green circle"}
    assert rows[0]["score"] == pytest.approx(0.4 + 2 / 3, abs=1e-3) and rows[0]["users"] == 2
    assert rows[0]["image_path"] == str(blobs.path(disputed.image_sha256))
    assert all(r["url"] is None for r in rows)  # no public URL configured

    monkeypatch.setenv("CAPBOT_PUBLIC_URL", "https://capbot.example/")
    assert main(["feedback", "queue", "--json", "--limit", "2"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["url"] for r in rows] == [None, f"https://capbot.example/v1/captions/{web.id}"]

    assert main(["feedback", "queue", "--since", "2026-03-02"]) == 0  # the table
    out = capsys.readouterr().out
    assert "a blue square" in out and "a red circle" not in out and "1.07" in out


def test_queue_on_an_empty_database_says_so(env, capsys):
    capsys.readouterr()
    assert main(["feedback", "queue"]) == 0
    assert "nothing to review" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--limit", "0"], "--limit must be between 1 and 1000, got 0"),
    (["--limit", "5000"], "--limit must be between 1 and 1000"),
    (["--since", "last week"], "is not an ISO 8601 time"),
])
def test_bad_options_are_refused_with_a_reason(env, capsys, args, message):
    capsys.readouterr()
    assert main(["feedback", "queue", *args]) == 2
    assert message in capsys.readouterr().err


def test_a_bad_public_url_is_a_settings_error(env, capsys, monkeypatch):
    monkeypatch.setenv("CAPBOT_PUBLIC_URL", "capbot.example")
    assert main(["feedback", "queue"]) == 2
    assert "CAPBOT_PUBLIC_URL: Value error, must be an absolute http:// or https:// URL" in capsys.readouterr().err
