"""Storage rules in Modal mode: PostgreSQL only, blob writes committed, volume reloads only when no file
on the volume is open."""

from __future__ import annotations

import logging
import mmap

import pytest

from capbot.modal.volumes import (
    CommittingBlobStore, ModalStorageError, VolumeModelFiles, open_paths_under, require_postgres,
)
from tests.modal_support import LocalVolume


@pytest.mark.parametrize("url", ["", "sqlite:////data/capbot.db", "mysql://u@h/db"])
def test_anything_but_postgres_is_refused_with_what_to_set(url):
    with pytest.raises(ModalStorageError) as refused:
        require_postgres(url, secret_name="capbot-prod")
    message = refused.value.message
    assert refused.value.reason == "modal_needs_postgres"
    assert "CAPBOT_DATABASE_URL=postgresql://" in message and "'capbot-prod'" in message
    assert "SQLite" in message


def test_postgres_is_accepted():
    url = "postgresql+psycopg://capbot:pw@db.example.com:5432/capbot"
    assert require_postgres(url, secret_name="capbot") == url


def test_every_blob_write_is_committed_and_a_failed_commit_loses_nothing(tmp_path, caplog):
    volume = LocalVolume()
    blobs = CommittingBlobStore(tmp_path / "blobs", volume)
    sha = blobs.put(b"image bytes")
    assert volume.commits == 1 and blobs.get(sha) == b"image bytes"
    assert blobs.delete("0" * 64) is False and volume.commits == 1  # nothing removed, nothing to commit
    assert blobs.delete(sha) is True and volume.commits == 2

    def unreachable() -> None:
        raise RuntimeError("commit failed: service unavailable")

    volume.on_commit = unreachable
    with caplog.at_level(logging.WARNING):
        kept = blobs.put(b"other bytes")
    assert blobs.get(kept) == b"other bytes"
    assert "blob volume commit failed" in caplog.text


def test_open_and_memory_mapped_files_are_found(tmp_path):
    root = tmp_path / "models"
    (root / "v1").mkdir(parents=True)
    weights, other = root / "v1" / "model.safetensors", tmp_path / "elsewhere.bin"
    weights.write_bytes(b"\0" * 4096)
    other.write_bytes(b"x")
    assert open_paths_under(root) == []
    with open(other, "rb"):
        assert open_paths_under(root) == []
    with open(weights, "rb") as handle:
        assert open_paths_under(root) == [str(weights)]
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        assert open_paths_under(root) == [str(weights)]  # the file is closed, the mapping keeps it open
    finally:
        mapped.close()
    assert open_paths_under(root) == []


def test_reload_only_when_no_file_on_the_volume_is_open(tmp_path):
    mount = tmp_path / "models"
    (mount / "v1").mkdir(parents=True)
    (mount / "v1" / "config.json").write_text("{}")
    volume = LocalVolume(on_reload=lambda: (mount / "v2").mkdir())
    files = VolumeModelFiles(volume, mount)
    files.make_visible(str(mount / "v1"))  # already visible
    files.make_visible("nlpconnect/vit-gpt2-image-captioning")  # not on the volume
    assert volume.reloads == 0
    with open(mount / "v1" / "config.json"):
        with pytest.raises(ModalStorageError) as busy:
            files.make_visible(str(mount / "v2"))
    assert busy.value.reason == "volume_busy" and "config.json" in busy.value.message
    assert volume.reloads == 0
    files.make_visible(str(mount / "v2"))
    assert volume.reloads == 1 and (mount / "v2").is_dir()


def test_a_promoted_directory_missing_after_reload_is_reported(tmp_path):
    volume = LocalVolume()
    with pytest.raises(ModalStorageError) as missing:
        VolumeModelFiles(volume, tmp_path).make_visible(str(tmp_path / "v9"))
    assert volume.reloads == 1 and missing.value.reason == "model_missing"
    assert "committed before it was promoted" in missing.value.message
