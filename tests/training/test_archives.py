"""Zip extraction: contents, completion marker, resumption and refusal of unsafe members."""

from __future__ import annotations

import stat
import zipfile

import pytest

from training.data.archives import ArchiveError, completed_extraction, extract_zip, marker_path


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_extracts_files_and_writes_marker(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"imgs/1.jpg": b"one", "imgs/sub/2.jpg": b"two", "notes.txt": b"hi"})
    result = extract_zip(archive, tmp_path / "out", show_progress=False)
    assert result.files == 3 and not result.skipped
    assert (tmp_path / "out/imgs/sub/2.jpg").read_bytes() == b"two"
    assert marker_path(archive, tmp_path / "out").is_file()
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_second_extraction_is_skipped_even_without_the_archive(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"x.txt": b"x"})
    extract_zip(archive, tmp_path / "out", show_progress=False)
    (tmp_path / "out/x.txt").write_bytes(b"changed by the user")
    archive.unlink()
    result = extract_zip(archive, tmp_path / "out", show_progress=False)
    assert result.skipped and result.files == 1
    assert completed_extraction(archive, tmp_path / "out") == result
    assert (tmp_path / "out/x.txt").read_bytes() == b"changed by the user"


def test_interrupted_extraction_rewrites_only_incomplete_files(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"a.txt": b"aaaa", "b.txt": b"bbbb"})
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_bytes(b"AAAA")  # same size: treated as already written
    (out / "b.txt").write_bytes(b"b")  # truncated: rewritten
    extract_zip(archive, out, show_progress=False)
    assert (out / "a.txt").read_bytes() == b"AAAA"
    assert (out / "b.txt").read_bytes() == b"bbbb"


@pytest.mark.parametrize("name", ["../evil.txt", "ok/../../evil.txt", "/abs/evil.txt", "C:/evil.txt", "..\\evil.txt"])
def test_traversal_is_refused_before_anything_is_written(tmp_path, name):
    archive = _zip(tmp_path / "bad.zip", {"good.txt": b"fine", name: b"evil"})
    with pytest.raises(ArchiveError, match="outside the destination") as info:
        extract_zip(archive, tmp_path / "out" / "inner", show_progress=False)
    assert info.value.reason == "unsafe_archive"
    assert not (tmp_path / "out" / "inner" / "good.txt").exists()
    assert not list(tmp_path.rglob("evil.txt"))


def test_symlink_member_is_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match="symbolic link"):
        extract_zip(archive, tmp_path / "out", show_progress=False)


def test_corrupt_archive_is_a_user_error(tmp_path):
    archive = tmp_path / "html.zip"
    archive.write_text("<html>login page</html>")
    with pytest.raises(ArchiveError, match="not a readable zip") as info:
        extract_zip(archive, tmp_path / "out", show_progress=False)
    assert info.value.reason == "bad_archive"
    assert not marker_path(archive, tmp_path / "out").exists()
