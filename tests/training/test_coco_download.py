"""COCO 2017 download and extraction against a local server laid out like images.cocodataset.org."""

from __future__ import annotations

import io
import json
import zipfile

import httpx
import pytest
from PIL import Image

from storage.errors import UserError
from tests.fakes.http_files import FileServer, LocalTransport, Route
from training.data.coco import load_split
from training.data.coco_download import COCO_PARTS, OFFICIAL_BASE_URL, download_coco
from training.data.download import DownloadError

VAL_PATH = "/zips/val2017.zip"
ANN_PATH = "/annotations/annotations_trainval2017.zip"


def _jpeg(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), colour).save(buffer, "JPEG")
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def coco_zips() -> dict[str, bytes]:
    """Tiny archives with the official internal layout: val2017/<id>.jpg, annotations/captions_val2017.json."""
    images = {f"val2017/{i:012d}.jpg": _jpeg((40 * i, 90, 200)) for i in (1, 2, 3)}
    captions = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in (1, 2, 3)],
        "annotations": [{"id": 10 * i + k, "image_id": i, "caption": f"picture {i} caption {k}"}
                        for i in (1, 2, 3) for k in range(2)],
    }
    return {
        VAL_PATH: _zip(images),
        ANN_PATH: _zip({"annotations/captions_val2017.json": json.dumps(captions).encode()}),
    }


@pytest.fixture
def server(coco_zips):
    with FileServer() as srv:
        for path, body in coco_zips.items():
            srv.add(path, Route(body, content_type="application/zip"))
        yield srv


def _download(out, server_or_bases, **kw):
    bases = server_or_bases if isinstance(server_or_bases, tuple) else (server_or_bases.base_url,)
    kw.setdefault("parts", ("val2017", "annotations"))
    return download_coco(out, base_urls=bases, show_progress=False, timeout=2, sleep=lambda s: None, **kw)


def test_downloads_extracts_and_is_readable_by_the_coco_loader(server, tmp_path):
    result = _download(tmp_path / "coco", server)
    assert [(p.name, p.skipped, p.files) for p in result.parts] == [("val2017", False, 3), ("annotations", False, 1)]
    assert result.captions_file("val2017").is_file()
    assert len(list(result.image_dir("val2017").glob("*.jpg"))) == 3
    loaded = load_split(tmp_path / "coco", "val")
    assert {item.image_id: item.captions for item in loaded.items}[2] == ("picture 2 caption 0", "picture 2 caption 1")
    assert (tmp_path / "coco/downloads/val2017.zip").is_file()


def test_second_run_makes_no_request(server, tmp_path):
    _download(tmp_path / "coco", server, keep_archives=False)
    assert not (tmp_path / "coco/downloads/val2017.zip").exists()
    server.requests.clear()
    result = _download(tmp_path / "coco", server)
    assert all(p.skipped for p in result.parts)
    assert server.requests == []


def test_interrupted_archive_resumes_and_extracts(server, coco_zips, tmp_path):
    server.routes[VAL_PATH].drop_after = len(coco_zips[VAL_PATH]) // 2
    result = _download(tmp_path / "coco", server, parts=("val2017",))
    assert result.parts[0].files == 3
    assert [s.range for s in server.seen(VAL_PATH)] == [None, f"bytes={len(coco_zips[VAL_PATH]) // 2}-"]
    assert (tmp_path / "coco/downloads/val2017.zip").read_bytes() == coco_zips[VAL_PATH]


def test_falls_back_to_the_next_base_url(server, tmp_path):
    dead_mirror = server.url("/mirror-that-404s")
    result = _download(tmp_path / "coco", (dead_mirror, server.base_url), parts=("annotations",))
    assert result.parts[0].files == 1
    assert server.seen("/mirror-that-404s" + ANN_PATH)  # the mirror was tried first


def test_missing_everywhere_is_a_clear_error(server, tmp_path):
    with pytest.raises(DownloadError, match=r"/nothing/zips/val2017.zip was not found \(HTTP 404\)") as info:
        _download(tmp_path / "coco", (server.url("/nothing"),), parts=("val2017",))
    assert info.value.reason == "not_found"
    with pytest.raises(DownloadError, match="COCO val2017 from any mirror: .*/a/zips.*; .*/b/zips"):
        _download(tmp_path / "coco", (server.url("/a"), server.url("/b")), parts=("val2017",))


def test_official_host_is_checked_against_known_sizes(server, tmp_path):
    # The real URL is requested (served locally): the tiny archive is not the official one and is refused.
    with httpx.Client(transport=LocalTransport(server)) as client:
        with pytest.raises(DownloadError, match=str(COCO_PARTS["annotations"].size)) as info:
            _download(tmp_path / "coco", (OFFICIAL_BASE_URL,), parts=("annotations",), client=client)
    assert info.value.reason == "size_mismatch"
    assert [s.path for s in server.requests] == [ANN_PATH]
    assert not list((tmp_path / "coco").rglob("*.json"))


def test_unknown_part_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown COCO part"):
        download_coco(tmp_path, parts=("test2014",), show_progress=False)
