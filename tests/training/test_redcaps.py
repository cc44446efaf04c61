"""RedCaps: annotations, seeded splits, subset download, save_to_disk and COCO-format output."""

from __future__ import annotations

import json

import pytest

from tests.fakes.http_files import FileServer, Route
from tests.training.test_image_fetch import image_bytes, noisy_png
from training.data.coco import load_split
from training.data.image_fetch import FetchOptions
from training.data.redcaps import (
    RedcapsError,
    RedcapsRecord,
    build_redcaps,
    coco_image_id,
    load_annotation_files,
    load_hub_records,
    load_redcaps,
    split_records,
)

OPTIONS = FetchOptions(timeout=0.3, retries=0, max_bytes=6_000, backoff_s=0)
BAD = {"b404": None, "bstall": "stall", "bhtml": "html", "bhuge": "huge"}  # image id -> how it fails


def _row(image_id, url, subreddit):
    return {"image_id": image_id, "author": "someone", "url": url, "raw_caption": f"My {image_id}!",
            "caption": f"my photo {image_id}", "subreddit": subreddit, "score": 3,
            "created_utc": 1577836800.0, "permalink": f"/r/{subreddit}/comments/{image_id}/"}


@pytest.fixture
def server():
    with FileServer() as srv:
        yield srv


@pytest.fixture
def annotations(server, tmp_path):
    """Two subreddit files: 24 good images, 4 bad ones (one of each failure kind), one crosspost duplicate."""
    good = [f"g{i:02d}" for i in range(24)]
    for n, image_id in enumerate(good):
        server.add(f"/i/{image_id}.jpg", Route(image_bytes((10 * n, 100, 50)), content_type="image/jpeg"))
    server.add("/i/bstall.jpg", Route(image_bytes(), content_type="image/jpeg", stall_s=30))
    server.add("/i/bhtml.jpg", Route(b"<html>removed</html>", content_type="image/jpeg"))
    server.add("/i/bhuge.jpg", Route(noisy_png(), content_type="image/png"))
    ids = good + list(BAD)
    files = {"itookapicture": ids[::2], "earthporn": ids[1::2] + [ids[0]]}
    folder = tmp_path / "annotations"
    folder.mkdir()
    for subreddit, chosen in files.items():
        rows = [_row(i, server.url(f"/i/{i}.jpg"), subreddit) for i in chosen]
        (folder / f"{subreddit}_2020.json").write_text(json.dumps({"info": {}, "annotations": rows}))
    return folder


def _build(records, out, **kw):
    kw.setdefault("options", OPTIONS)
    return build_redcaps(records, out, workers=4, show_progress=False, sleep=lambda s: None, **kw)


def test_annotation_files_load_and_deduplicate(annotations):
    records = load_annotation_files([annotations])
    assert len(records) == 28
    assert {r.subreddit for r in records} == {"itookapicture", "earthporn"}
    one = next(r for r in records if r.image_id == "g03")
    assert (one.caption, one.raw_caption, one.score) == ("my photo g03", "My g03!", 3)


def test_bad_annotation_files_are_user_errors(tmp_path):
    (tmp_path / "bad.json").write_text('{"annotations": [{"caption": "no id"}]}')
    with pytest.raises(RedcapsError, match="not a RedCaps annotation file"):
        load_annotation_files([tmp_path / "bad.json"])
    with pytest.raises(RedcapsError, match="does not exist"):
        load_annotation_files([tmp_path / "nope"])


def test_split_is_deterministic_by_seed_and_independent_of_input_order():
    records = [RedcapsRecord(f"id{i:03d}", f"http://x/{i}", f"c{i}") for i in range(100)]
    first = split_records(records, (0.6, 0.2, 0.2), seed=7)
    again = split_records(list(reversed(records)), (0.6, 0.2, 0.2), seed=7)
    other = split_records(records, (0.6, 0.2, 0.2), seed=8)
    assert [len(first[s]) for s in ("train", "val", "test")] == [60, 20, 20]
    assert first == again
    assert first["train"] != other["train"]
    assert sorted(r.image_id for s in first.values() for r in s) == sorted(r.image_id for r in records)
    with pytest.raises(RedcapsError, match="summing to 1"):
        split_records(records, (0.5, 0.2, 0.2))


def test_build_subset_counts_failures_and_round_trips(server, annotations, tmp_path):
    records = load_annotation_files([annotations])
    out = tmp_path / "redcaps"
    build = _build(records, out, ratios=(0.5, 0.25, 0.25), counts=(6, 2, 3), seed=1)
    assert build.counts == {"train": 6, "val": 2, "test": 3} and build.shortfall == {}
    requested_bad = {path.split("/")[-1][:-4] for path in {s.path for s in server.requests}} & set(BAD)
    expected = {"not_found": "b404", "timeout": "bstall", "not_image": "bhtml", "too_large": "bhuge"}
    assert build.failures == {kind: 1 for kind, image_id in expected.items() if image_id in requested_bad}

    dataset = load_redcaps(out)
    assert {name: len(split) for name, split in dataset.items()} == build.counts
    row = dataset["train"][0]
    assert (out / row["image_path"]).is_file() and row["caption"] == f"my photo {row['image_id']}"
    assert set(dataset["train"]["image_id"]).isdisjoint(dataset["test"]["image_id"])

    coco = load_split(out, "train")  # the shared COCO loader reads the subset as it is
    by_id = {coco_image_id(i): c for i, c in zip(dataset["train"]["image_id"], dataset["train"]["caption"])}
    assert {item.image_id: item.captions[0] for item in coco.items} == by_id
    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == build.counts and len(report["failed_images"]) == sum(build.failures.values())


def test_same_seed_gives_the_same_subset_without_new_requests(server, annotations, tmp_path):
    records = load_annotation_files([annotations])
    first = _build(records, tmp_path / "a", counts=(5, 1, 1), seed=3)
    first_ids = list(load_redcaps(tmp_path / "a")["train"]["image_id"])
    server.requests.clear()
    again = _build(records, tmp_path / "a", counts=(5, 1, 1), seed=3)
    assert list(load_redcaps(tmp_path / "a")["train"]["image_id"]) == first_ids
    assert again.counts == first.counts
    assert [s for s in server.requests if "/i/g" in s.path] == []  # every good image came from disk
    other = _build(records, tmp_path / "b", counts=(5, 1, 1), seed=4)
    assert list(load_redcaps(tmp_path / "b")["train"]["image_id"]) != first_ids
    assert other.counts == first.counts


def test_without_counts_every_image_is_tried_and_each_failure_kind_counted(annotations, tmp_path):
    build = _build(load_annotation_files([annotations]), tmp_path / "all", counts=None, seed=5)
    assert build.failures == {"not_found": 1, "timeout": 1, "not_image": 1, "too_large": 1}
    assert sum(build.counts.values()) == 24 and build.attempted == 28 and build.shortfall == {}


def test_new_seed_reuses_images_saved_under_other_splits(server, annotations, tmp_path):
    records = load_annotation_files([annotations])
    _build(records, tmp_path / "out", counts=None, seed=1)
    server.requests.clear()
    _build(records, tmp_path / "out", counts=(6, 2, 2), seed=2)
    assert [s for s in server.requests if "/i/g" in s.path] == []
    dataset = load_redcaps(tmp_path / "out")
    for split in ("train", "val", "test"):
        assert all(path.startswith(f"{split}/") and (tmp_path / "out" / path).is_file()
                   for path in dataset[split]["image_path"])


def test_too_few_images_leaves_a_reported_shortfall(annotations, tmp_path):
    records = load_annotation_files([annotations])
    build = _build(records, tmp_path / "out", ratios=(0.5, 0.25, 0.25), counts=(100, 0, 1))
    assert build.counts["val"] == 0 and build.counts["test"] == 1
    assert build.shortfall == {"train": 100 - build.counts["train"]}
    assert sum(build.failures.values()) + sum(build.counts.values()) <= 28


def test_nothing_downloadable_is_a_clear_error(server, tmp_path):
    records = [RedcapsRecord(f"x{i}", server.url(f"/gone/{i}.jpg"), "c") for i in range(4)]
    with pytest.raises(RedcapsError, match="none of 4 images could be downloaded.*not_found"):
        _build(records, tmp_path / "out", counts=(2, 1, 1), ratios=(0.5, 0.25, 0.25))


def test_hub_dataset_offline_is_a_user_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RedcapsError, match="could not load dataset 'kdexd/red_caps'") as info:
        load_hub_records("kdexd/red_caps")
    assert info.value.reason == "hub_unavailable"


def test_load_redcaps_names_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RedcapsError, match="no saved RedCaps dataset") as info:
        load_redcaps(tmp_path / "nothing-here")
    assert info.value.reason == "missing_dataset"
    with pytest.raises(RedcapsError, match="could not load dataset 'someone/redcaps-subset'") as info:
        load_redcaps("someone/redcaps-subset")
    assert info.value.reason == "hub_unavailable"


def test_dataset_repo_with_redcaps_columns_gives_records(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    rows = [{**_row(f"h{i}", f"http://x/{i}.jpg", "pics"), "image_url": f"http://x/{i}.jpg"} for i in range(3)]
    for row in rows:
        del row["url"]  # the hub copy of RedCaps calls it image_url
    (repo / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    records = load_hub_records(str(repo), cache_dir=str(tmp_path / "cache"))
    assert [(r.image_id, r.url) for r in records] == [("h0", "http://x/0.jpg"), ("h1", "http://x/1.jpg"),
                                                      ("h2", "http://x/2.jpg")]
