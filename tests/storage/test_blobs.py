"""LocalBlobStore: content addressing, fan-out, atomic writes, and no path tricks."""

from __future__ import annotations

import hashlib
import threading

import pytest

from storage.blobs import BlobStore, LocalBlobStore
from storage.errors import BlobNotFound, InvalidArgument


def test_put_get_path_exists_delete(tmp_path):
    store = LocalBlobStore(tmp_path / "blobs")
    data = b"\x89PNG fake bytes"
    sha = store.put(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert store.path(sha) == tmp_path / "blobs" / sha[:2] / sha[2:4] / sha
    assert store.exists(sha) and store.get(sha) == data
    assert store.put(data) == sha  # idempotent
    assert store.delete(sha) is True
    assert not store.exists(sha) and store.delete(sha) is False
    with pytest.raises(BlobNotFound):
        store.get(sha)
    assert isinstance(store, BlobStore)


def test_no_temp_files_left_and_concurrent_writers_agree(tmp_path):
    store = LocalBlobStore(tmp_path)
    data = bytes(range(256)) * 1000
    threads = [threading.Thread(target=store.put, args=(data,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sha = hashlib.sha256(data).hexdigest()
    assert store.get(sha) == data
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [sha]


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    store = LocalBlobStore(tmp_path)

    def broken_replace(*_args):
        raise OSError("disk full")

    monkeypatch.setattr("storage.blobs.os.replace", broken_replace)
    with pytest.raises(OSError):
        store.put(b"data")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ABC", "a" * 63, "g" * 64, "A" * 64])
def test_keys_must_be_sha256_hex(tmp_path, bad):
    with pytest.raises(InvalidArgument):
        LocalBlobStore(tmp_path).path(bad)
