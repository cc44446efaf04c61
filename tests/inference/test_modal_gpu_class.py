"""The deployed GPU class's bodies run through `.local()` with the tiny model: batches of real image bytes
(a bad one among them), and a warm instance that notices a promotion made by another process."""

from __future__ import annotations

from pathlib import Path

import pytest
import skimage

from capbot.modal.volumes import ModalStorageError
from inference.modal_wire import caption_from_wire, options_to_wire
from inference.modeldir import load_metadata
from inference.types import GenerationOptions
from tests.modal_support import deployment_env, promote_copy

pytestmark = [pytest.mark.filterwarnings("error::modal.exception.DeprecationError"),
              pytest.mark.filterwarnings("ignore:.*is executing locally and will not have access:UserWarning")]

PHOTOS = Path(skimage.__file__).parent / "data"
OPTIONS = options_to_wire(GenerationOptions(max_new_tokens=5))


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_captions_a_batch_of_image_bytes_with_a_bad_one(monkeypatch, tmp_path, tiny_model_dir, database_url):
    from capbot.modal.app import GpuCaptioner

    deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url)
    photos = [(PHOTOS / name).read_bytes() for name in ("chelsea.png", "rocket.jpg", "coffee.png")]
    batch = [photos[0], b"GIF89a but not really", photos[1], photos[2]]
    results = GpuCaptioner().caption.local(batch, [OPTIONS] * len(batch))
    assert len(results) == 4
    assert results[1] == {"error": results[1]["error"], "reason": "not_image", "kind": "image"}
    captions = [caption_from_wire(r) for i, r in enumerate(results) if i != 1]
    assert {c.model_version for c in captions} == {load_metadata(tiny_model_dir).version}
    assert all(c.text for c in captions)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_warm_instance_switches_to_a_promoted_version(monkeypatch, tmp_path, tiny_model_dir, database_url):
    from capbot.modal.app import GpuCaptioner

    deployment = deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url, CAPBOT_REGISTRY_POLL_S="0.001")
    warm = GpuCaptioner()
    photo = (PHOTOS / "chelsea.png").read_bytes()
    first = caption_from_wire(warm.caption.local([photo], [OPTIONS])[0])
    assert first.model_version == load_metadata(tiny_model_dir).version
    promoted = promote_copy(tiny_model_dir, deployment.models_dir, database_url)
    after = caption_from_wire(warm.caption.local([photo], [OPTIONS])[0])
    assert after.model_version == promoted
    assert after.text == first.text  # the same weights under a new version id
    assert deployment.volumes["models"].reloads == 0  # the directory was visible: no reload needed


def test_refuses_sqlite_with_what_to_set(monkeypatch, tmp_path, tiny_model_dir):
    from capbot.modal.app import GpuCaptioner

    deployment_env(monkeypatch, tmp_path, tiny_model_dir, f"sqlite:///{tmp_path / 'capbot.db'}")
    with pytest.raises(ModalStorageError) as refused:
        GpuCaptioner().caption.local([(PHOTOS / "chelsea.png").read_bytes()], [OPTIONS])
    assert "needs PostgreSQL" in refused.value.message and "Modal Secret 'capbot'" in refused.value.message


# --- issue 21: a lighter cold start, a small database pool ------------------------------------------------

@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_gpu_container_starts_without_migrating_and_loads_weights_straight_from_the_volume(
        monkeypatch, tmp_path, tiny_model_dir, database_url):
    from capbot.modal.app import GpuCaptioner
    from storage import db

    deployment = deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url)
    db.upgrade(database_url)  # what the deploy's one migration job did
    active = promote_copy(tiny_model_dir, deployment.models_dir, database_url)  # on the models Volume
    migrations, engines = [], []
    monkeypatch.setattr("storage.db.upgrade", lambda url, *a, **k: migrations.append(url))
    real_engine = db.create_engine_for
    monkeypatch.setattr("storage.db.create_engine_for",
                        lambda url, **kw: engines.append(kw) or real_engine(url, **kw))
    result = GpuCaptioner().caption.local([(PHOTOS / "chelsea.png").read_bytes()], [OPTIONS])[0]
    assert caption_from_wire(result).model_version == active
    assert migrations == []  # not once per container
    weights = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin"))
    assert weights and all(deployment.models_dir / active in p.parents for p in weights)  # no local copy
    assert engines == [{"pool_size": 2}]  # the plan's small pool (storage.db: no overflow beyond it)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_containers_finding_the_schema_behind_ask_the_one_migration_job(monkeypatch, tmp_path, tiny_model_dir,
                                                                        database_url):
    from capbot.modal.app import GpuCaptioner
    from storage import db

    deployment = deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url)  # an empty database
    photo = [(PHOTOS / "chelsea.png").read_bytes()]
    assert caption_from_wire(GpuCaptioner().caption.local(photo, [OPTIONS])[0]).text
    assert deployment.migrations == 1  # deployed with `modal deploy -m`: the first container asked the job
    engine = db.create_engine_for(database_url)
    try:
        assert db.current_revision(engine) == db.head_revision()
    finally:
        engine.dispose()
    assert caption_from_wire(GpuCaptioner().caption.local(photo, [OPTIONS])[0]).text
    assert deployment.migrations == 1  # the next container finds it at head


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_stopping_a_gpu_container_releases_its_model_and_connections(monkeypatch, tmp_path, tiny_model_dir,
                                                                     database_url):
    from capbot.modal.app import GpuCaptioner
    from tests.modal_support import stop_container

    deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url)
    gpu = GpuCaptioner()
    gpu.caption.local([(PHOTOS / "chelsea.png").read_bytes()], [OPTIONS])
    engine = gpu.container.engine
    assert engine.pool.checkedin() == 1 and engine.pool.checkedout() == 0  # one idle connection, kept
    stop_container(gpu)
    assert engine.pool.checkedin() == 0  # disposed: PostgreSQL sees the connection close
