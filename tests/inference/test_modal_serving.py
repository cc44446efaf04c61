"""`CaptionServer`, the GPU class's work: batches with refused images in them, and following the registry
(throttled, never dropping a batch, keeping the old model when the new one cannot be loaded)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import skimage

from capbot.modal.volumes import VolumeModelFiles, open_paths_under
from inference.captioner import LocalCaptioner
from inference.modal_serving import CaptionServer
from inference.modal_wire import caption_from_wire, options_to_wire
from inference.modeldir import METADATA_FILE, load_metadata, new_metadata
from inference.spec import CaptionerSpec
from inference.types import GenerationOptions
from tests.modal_support import LocalVolume
from tests.specs import EXACT_GREEDY

PHOTOS = Path(skimage.__file__).parent / "data"
OPTIONS = options_to_wire(GenerationOptions(max_new_tokens=4))


def _version_copy(tiny_model_dir: Path, where: Path) -> Path:
    """The tiny model under a new version id (what a promotion brings)."""
    shutil.copytree(tiny_model_dir, where)
    (where / METADATA_FILE).write_text(new_metadata(made_by="retrain").to_json(), encoding="utf-8")
    return where


class Registry:
    """The active location as the database would answer it; `down` makes the lookup fail."""

    def __init__(self, location: str) -> None:
        self.location, self.down, self.asked = location, False, 0

    def __call__(self) -> str:
        self.asked += 1
        if self.down:
            raise ConnectionError("database unreachable")
        return self.location


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _server(registry: Registry, clock: Clock, **kwargs) -> CaptionServer:
    return CaptionServer(lambda location: LocalCaptioner(location, EXACT_GREEDY), registry, poll_s=30, clock=clock,
                         **kwargs)


def _versions(server: CaptionServer, n: int = 1) -> list[str]:
    photo = (PHOTOS / "chelsea.png").read_bytes()
    return [caption_from_wire(r).model_version for r in server.caption_batch([photo] * n, [OPTIONS] * n)]


def test_a_batch_answers_every_image_in_order_refusals_included(tiny_model_dir):
    server = _server(Registry(str(tiny_model_dir)), Clock())
    photos = [(PHOTOS / name).read_bytes() for name in ("chelsea.png", "rocket.jpg")]
    beams = options_to_wire(GenerationOptions(num_beams=2, max_new_tokens=4, num_alternatives=1))
    bad_options = {**OPTIONS, "num_beams": 0}
    results = server.caption_batch([photos[0], b"\x89PNG broken", photos[1], b"", photos[0]],
                                   [OPTIONS, OPTIONS, beams, OPTIONS, bad_options])
    assert [r.get("reason") for r in results] == [None, "not_image", None, "empty", "bad_options"]
    version = load_metadata(tiny_model_dir).version
    assert caption_from_wire(results[0]).model_version == version
    assert len(caption_from_wire(results[2]).alternatives) <= 1
    assert results[1]["kind"] == "image" and results[4]["kind"] == "user"


def test_follows_a_promotion_at_the_next_due_check(tiny_model_dir, tmp_path):
    registry, clock = Registry(str(tiny_model_dir)), Clock()
    server = _server(registry, clock)
    old, new = load_metadata(tiny_model_dir).version, _version_copy(tiny_model_dir, tmp_path / "v2")
    registry.location = str(new)
    clock.now += 10
    assert _versions(server) == [old]  # not due yet: no registry query per batch
    assert registry.asked == 1
    clock.now += 25
    assert _versions(server) == [load_metadata(new).version]
    assert registry.asked == 2 and server.location == str(new)


def test_a_model_that_does_not_load_leaves_the_old_one_serving(tiny_model_dir, tmp_path, caplog):
    registry, clock = Registry(str(tiny_model_dir)), Clock()
    server = _server(registry, clock)
    old = load_metadata(tiny_model_dir).version
    broken = tmp_path / "broken"
    broken.mkdir()
    registry.location = str(broken)
    clock.now += 31
    with caplog.at_level(logging.ERROR, logger="inference.modal_serving"):
        assert _versions(server) == [old]
    assert "previous one keeps serving" in caplog.text and str(broken) in caplog.text
    shutil.rmtree(broken)
    _version_copy(tiny_model_dir, broken)  # the files arrive: the next due check switches
    clock.now += 31
    assert _versions(server) == [load_metadata(broken).version]


def test_an_unreachable_registry_does_not_stop_captioning(tiny_model_dir, caplog):
    registry, clock = Registry(str(tiny_model_dir)), Clock()
    server = _server(registry, clock)
    registry.down = True
    clock.now += 31
    with caplog.at_level(logging.ERROR):
        assert _versions(server, 2) == [load_metadata(tiny_model_dir).version] * 2
    assert "registry check failed" in caplog.text


def test_a_model_committed_by_another_container_is_seen_after_a_volume_reload(tiny_model_dir, tmp_path):
    mount, staged = tmp_path / "models", tmp_path / "committed-elsewhere"
    first = _version_copy(tiny_model_dir, mount / "v1")
    promoted = _version_copy(tiny_model_dir, staged / "v2")
    volume = LocalVolume(on_reload=lambda: shutil.copytree(promoted, mount / "v2"))  # the newer committed state
    registry, clock = Registry(str(first)), Clock()
    files = VolumeModelFiles(volume, mount)
    # bf16 weights are copies, as on a GPU (dtype auto there): no file of the Volume stays mapped once loaded.
    server = CaptionServer(lambda location: LocalCaptioner(location, CaptionerSpec(device="cpu", dtype="bfloat16")), registry,
                           poll_s=30, clock=clock, prepare=files.prepare)
    assert open_paths_under(mount) == []
    assert volume.reloads == 0  # a new container already sees the latest commit
    assert server.captioner.model_version == load_metadata(first).version
    registry.location = str(mount / "v2")
    clock.now += 31
    assert _versions(server) == [load_metadata(promoted).version]
    assert volume.reloads == 1
    assert server.location == str(mount / "v2")  # loaded straight from the Volume: no copy on local disk
    assert sorted(p.name for p in tmp_path.iterdir()) == ["committed-elsewhere", "models"]
