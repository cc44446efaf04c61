"""The retention sweep on Modal: its Cron, and the job's body (through `.local()`, with a local stand-in for the
blobs Volume) removing files past their retention and committing the volume."""

from __future__ import annotations

from datetime import timedelta

import pytest

from storage import captions, db, images
from storage.blobs import LocalBlobStore
from storage.clock import utcnow
from tests.modal_support import deployment_env, registered

pytestmark = [pytest.mark.filterwarnings("error::modal.exception.DeprecationError"),
              pytest.mark.filterwarnings("ignore:.*is executing locally and will not have access:UserWarning")]
on_postgres = pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                                      indirect=True)


def test_the_sweep_runs_hourly_on_the_blobs_volume_without_a_gpu():
    from capbot.modal import app as modal_app
    from capbot.modal.plan import mount_path

    sweep = registered(modal_app.app)["sweep_images"]
    assert sweep.info.schedule == "Cron('17 * * * *', UTC)"
    assert set(sweep.info.volumes) == {mount_path("blobs")} and sweep.info.gpus == [] and sweep.max_containers == 1


@on_postgres
def test_the_sweep_job_removes_old_uncorrected_files_and_commits_the_volume(monkeypatch, tmp_path, tiny_model_dir,
                                                                            database_url):
    from capbot.modal.app import sweep_images

    deployment = deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url,
                                CAPBOT_IMAGE_RETENTION_DAYS="30")
    db.upgrade(database_url)
    engine = db.create_engine_for(database_url)
    blobs = LocalBlobStore(deployment.data_dir / "blobs")
    try:
        with db.session_scope(engine) as session:
            for data, age in ((b"old", 31), (b"new", 1)):
                when = utcnow() - timedelta(days=age)
                image = images.store_image(session, blobs, data, format="png", width=1, height=1, now=when)
                captions.record_caption(session, image_sha256=image.sha256, text="a thing", model_version="v0",
                                        platform="discord", workspace_id="G1", now=when)
        result = sweep_images.local()
    finally:
        engine.dispose()
    assert result == {"removed": 1, "kept_for_review": 0, "kept_for_training": 0}
    assert sorted(p.read_bytes() for p in (deployment.data_dir / "blobs").rglob("*") if p.is_file()) == [b"new"]
    blobs_volume = deployment.volumes["blobs"]
    assert blobs_volume.reloads == 1 and blobs_volume.commits == 1
