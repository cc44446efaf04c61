"""`capbot data coco` and `capbot data redcaps` through the real CLI entry point, against a local server."""

from __future__ import annotations

import json

import pytest

from capbot.cli import main
from tests.fakes.http_files import FileServer, Route
from tests.training.test_coco_download import ANN_PATH, VAL_PATH, coco_zips  # noqa: F401  (fixture)
from tests.training.test_image_fetch import image_bytes
from training.data.redcaps import load_redcaps


@pytest.fixture
def server():
    with FileServer() as srv:
        yield srv


def test_data_coco_downloads_then_skips(server, coco_zips, tmp_path, capsys):  # noqa: F811
    for path, body in coco_zips.items():
        server.add(path, Route(body, content_type="application/zip"))
    args = ["data", "coco", "--out", str(tmp_path / "coco"), "--parts", "val2017,annotations",
            "--base-url", server.base_url, "--timeout", "2"]
    assert main(args) == 0
    assert "val2017: downloaded" in capsys.readouterr().out
    assert (tmp_path / "coco/annotations/captions_val2017.json").is_file()
    server.requests.clear()
    assert main(args) == 0
    assert "val2017: already complete, 3 files" in capsys.readouterr().out
    assert server.requests == []


def test_data_coco_reports_a_missing_mirror(server, tmp_path, capsys):
    code = main(["data", "coco", "--out", str(tmp_path), "--parts", "annotations", "--base-url", server.url("/x")])
    assert code == 2
    assert "error: " + server.url("/x/annotations/annotations_trainval2017.zip") + " was not found" in capsys.readouterr().err


def test_data_coco_rejects_unknown_parts(tmp_path, capsys):
    assert main(["data", "coco", "--out", str(tmp_path), "--parts", "val2014"]) == 2
    assert "unknown COCO part" in capsys.readouterr().err


def test_data_redcaps_builds_a_subset(server, tmp_path, capsys):
    rows = []
    for i in range(8):
        server.add(f"/r/p{i}.jpg", Route(image_bytes((20 * i, 0, 0)), content_type="image/jpeg"))
        rows.append({"image_id": f"p{i}", "url": server.url(f"/r/p{i}.jpg"), "caption": f"photo {i}",
                     "raw_caption": f"Photo {i}", "subreddit": "pics", "author": "a", "score": 1,
                     "created_utc": 0.0, "permalink": ""})
    rows.append({**rows[0], "image_id": "dead", "url": server.url("/r/dead.jpg")})
    (tmp_path / "pics_2020.json").write_text(json.dumps({"info": {}, "annotations": rows}))
    code = main(["data", "redcaps", "--annotations", str(tmp_path / "pics_2020.json"), "--out", str(tmp_path / "rc"),
                 "--ratios", "0.5,0.25,0.25", "--subset", "3,1,1", "--workers", "2", "--timeout", "2", "--seed", "4"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "saved train 3, val 1, test 1 images" in out
    assert {name: len(split) for name, split in load_redcaps(tmp_path / "rc").items()} == {"train": 3, "val": 1, "test": 1}


@pytest.mark.parametrize("extra, message", [
    ([], "give either --annotations"),
    (["--annotations", "missing.json", "--subset", "3,x,1"], "--subset takes comma-separated numbers"),
    (["--annotations", "missing.json"], "does not exist"),
])
def test_data_redcaps_argument_errors(tmp_path, capsys, extra, message):
    assert main(["data", "redcaps", "--out", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err
