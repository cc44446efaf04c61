"""The deployed GPU class's bodies run through `.local()` with the tiny model: batches of real image bytes
(a bad one among them), and a warm instance that notices a promotion made by another process."""

from __future__ import annotations

from pathlib import Path

import pytest
import skimage

from capbot.modal_storage import ModalStorageError
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
    from inference.modal_app import GpuCaptioner

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
    from inference.modal_app import GpuCaptioner

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
    from inference.modal_app import GpuCaptioner

    deployment_env(monkeypatch, tmp_path, tiny_model_dir, f"sqlite:///{tmp_path / 'capbot.db'}")
    with pytest.raises(ModalStorageError) as refused:
        GpuCaptioner().caption.local([(PHOTOS / "chelsea.png").read_bytes()], [OPTIONS])
    assert "needs PostgreSQL" in refused.value.message and "Modal Secret 'capbot'" in refused.value.message
