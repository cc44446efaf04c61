"""The embedded retention sweep of `capbot run`: on its schedule it removes the files of uncorrected images past
their retention and keeps the rest; `capbot sweep-images` runs it by hand; `capbot export-user` writes a
person's archive."""

from __future__ import annotations

import io
import json
import time
import zipfile
from datetime import datetime, timedelta, timezone

import pytest

from capbot.app import start_sweep
from capbot.cli import main
from capbot.settings import get_settings
from storage import captions, corrections, db, images
from storage.blobs import LocalBlobStore
from storage.clock import utcnow
from training.scheduler import stop_scheduler


@pytest.fixture
def data(tmp_path, monkeypatch):
    """capbot's data dir with an old uncorrected image, an old corrected one and a new one: (settings, shas)."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("CAPBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CAPBOT_IMAGE_RETENTION_DAYS", "30")
    settings = get_settings()
    db.upgrade(settings.database_url)
    engine = db.create_engine_for(settings.database_url)
    blobs = LocalBlobStore(settings.blob_dir)
    shas = {}
    with db.session_scope(engine) as session:
        for name, age in (("old", 40), ("corrected", 40), ("new", 2)):
            when = utcnow() - timedelta(days=age)
            image = images.store_image(session, blobs, name.encode(), format="png", width=1, height=1, now=when)
            caption = captions.record_caption(session, image_sha256=image.sha256, text="a thing in a place",
                                              model_version="v0", platform="slack", workspace_id="T1",
                                              user_id="U1", now=when)
            shas[name] = image.sha256
            if name == "corrected":
                corrections.record_correction(session, caption_id=caption.id, user_id="U2", text="a red kite")
    engine.dispose()
    return settings, shas, blobs


def test_the_embedded_schedule_sweeps(data):
    settings, shas, blobs = data
    engine = db.create_engine_for(settings.database_url)
    scheduler = start_sweep(settings, engine, blobs)
    try:
        job = scheduler.get_job("capbot-retention_sweep")
        assert job.name == "retention_sweep" and job.next_run_time.minute == 17
        job.modify(next_run_time=datetime.now(timezone.utc))  # a tick now instead of at :17
        deadline = time.monotonic() + 20
        while blobs.exists(shas["old"]) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop_scheduler(scheduler)
        engine.dispose()
    assert not blobs.exists(shas["old"])
    assert blobs.exists(shas["corrected"]) and blobs.exists(shas["new"])


def test_no_schedule_when_its_cron_is_empty(data, monkeypatch):
    settings, _, blobs = data
    assert start_sweep(settings.model_copy(update={"retention_sweep_cron": ""}), None, blobs) is None


def test_sweep_images_by_hand(data, capsys):
    _, shas, blobs = data
    assert main(["sweep-images", "--dry-run"]) == 0
    assert "would remove 1 image file" in capsys.readouterr().out
    assert blobs.exists(shas["old"])
    assert main(["sweep-images"]) == 0
    assert "removed 1 image file;" in capsys.readouterr().out
    assert not blobs.exists(shas["old"])


def test_export_user_writes_the_archive(data, tmp_path, capsys):
    _, shas, _ = data
    out = tmp_path / "alice.zip"
    assert main(["export-user", "U1", "--platform", "slack", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out and not out.with_name("alice.zip.part").exists()
    with zipfile.ZipFile(io.BytesIO(out.read_bytes())) as archive:
        document = json.loads(archive.read("capbot-data.json"))
        assert sorted(archive.read(n) for n in archive.namelist() if n.startswith("images/")) == \
            [b"corrected", b"new", b"old"]
    assert len(document["captions"]) == 3 and document["corrections"] == []


def test_export_user_refuses_an_unknown_platform(data, tmp_path, capsys):
    assert main(["export-user", "U1", "--platform", "myspace", "--out", str(tmp_path / "x.zip")]) == 2
    assert "unknown platform 'myspace'" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists() and not (tmp_path / "x.zip.part").exists()
