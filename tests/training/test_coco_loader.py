"""The COCO-format loader on synthetic data, a COCO 2017 layout and a hand-made Karpathy split file."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest
from PIL import Image

from storage.errors import UserError
from training.data.coco import find_split, load_coco_captions, load_split, references, training_pairs


def test_loads_synthetic_split(synthetic_dataset):
    root = synthetic_dataset.out_dir
    files = find_split(root, "val")
    assert files.annotations == root / "annotations" / "captions_val.json"
    assert files.images_dir == root / "val"
    data = load_coco_captions(files.annotations, files.images_dir)
    raw = json.loads(files.annotations.read_text())
    assert len(data) == 12
    assert [i.image_id for i in data.items] == [img["id"] for img in raw["images"]]
    first = data.items[0]
    assert first.path == root / "val" / raw["images"][0]["file_name"] and first.path.is_file()
    assert list(first.captions) == [a["caption"] for a in raw["annotations"] if a["image_id"] == first.image_id]
    refs = references(data)
    assert set(refs) == {i.image_id for i in data.items} and all(len(r) == 5 for r in refs.values())


def test_training_pairs_pick_one_reference_per_image_per_epoch(synthetic_dataset):
    data = load_split(synthetic_dataset.out_dir, "train")
    epoch0 = training_pairs(data, epoch=0, seed=0)
    assert len(epoch0) == len(data)
    assert [p for p, _ in epoch0] == [i.path for i in data.items]
    assert all(caption in item.captions for (_, caption), item in zip(epoch0, data.items))
    assert training_pairs(data, epoch=0, seed=0) == epoch0  # deterministic
    assert training_pairs(data, epoch=0, seed=1) != epoch0  # the seed matters
    # Over five epochs every image sees each of its five references exactly once.
    seen: dict = {}
    for epoch in range(5):
        pairs = training_pairs(data, epoch=epoch, seed=0)
        assert pairs != epoch0 or epoch == 0
        for item, (_, caption) in zip(data.items, pairs):
            seen.setdefault(item.image_id, []).append(caption)
    assert all(sorted(c) == sorted(i.captions) for i, c in zip(data.items, seen.values()))
    # Not every image starts from its first reference.
    assert Counter(item.captions.index(c) for item, (_, c) in zip(data.items, epoch0)).most_common(1)[0][1] < len(data)


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path)


def test_coco_2017_layout(tmp_path):
    _image(tmp_path / "val2017" / "000000000139.jpg")
    _image(tmp_path / "val2017" / "000000000285.jpg")
    (tmp_path / "annotations").mkdir()
    ann = {
        "images": [
            {"id": 139, "file_name": "000000000139.jpg", "width": 8, "height": 8},
            {"id": 285, "file_name": "000000000285.jpg", "width": 8, "height": 8},
            {"id": 632, "file_name": "000000000632.jpg", "width": 8, "height": 8},  # no captions: dropped
        ],
        "annotations": [
            {"id": 1, "image_id": 139, "caption": "A woman stands in the dining area at the table.\n"},
            {"id": 2, "image_id": 285, "caption": "A big  brown bear sitting in the grass."},
            {"id": 3, "image_id": 139, "caption": "A room with chairs, a table, and a woman in it."},
        ],
    }
    (tmp_path / "annotations" / "captions_val2017.json").write_text(json.dumps(ann))
    for split in ("val", "val2017"):
        data = load_split(tmp_path, split)
        assert references(data) == {
            139: ["A woman stands in the dining area at the table.", "A room with chairs, a table, and a woman in it."],
            285: ["A big brown bear sitting in the grass."],
        }
        assert data.items[1].path == tmp_path / "val2017" / "000000000285.jpg"
    with pytest.raises(UserError, match="available: val2017") as info:
        find_split(tmp_path, "test")
    assert info.value.reason == "missing_split"


def _karpathy(tmp_path):
    images = []
    for i, (split, folder) in enumerate([("train", "train2014"), ("restval", "val2014"), ("val", "val2014"), ("test", "val2014")]):
        name = f"COCO_{folder}_{i:012d}.jpg"
        _image(tmp_path / folder / name)
        sentences = [{"raw": f"caption {j} of image {i}", "tokens": [], "imgid": i} for j in range(5)]
        images.append({"filepath": folder, "filename": name, "imgid": i, "cocoid": 100 + i, "split": split, "sentences": sentences})
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}))


def test_karpathy_split_file(tmp_path):
    _karpathy(tmp_path)
    files = find_split(tmp_path, "test")
    assert files.split == "test" and files.images_dir == tmp_path
    test = load_split(tmp_path, "test")
    assert [i.image_id for i in test.items] == [103]
    assert test.items[0].path == tmp_path / "val2014" / "COCO_val2014_000000000003.jpg"
    assert references(test)[103] == [f"caption {j} of image 3" for j in range(5)]
    assert [i.image_id for i in load_split(tmp_path, "train").items] == [100, 101]  # restval joins train
    assert len(load_coco_captions(tmp_path / "dataset_coco.json", tmp_path)) == 4  # no split: everything


def test_missing_and_invalid_files_are_user_errors(tmp_path, synthetic_dataset):
    with pytest.raises(UserError, match="does not exist") as info:
        load_coco_captions(tmp_path / "nope.json", tmp_path)
    assert info.value.reason == "missing_annotations"
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(UserError, match="not valid JSON"):
        load_coco_captions(bad, tmp_path)
    bad.write_text(json.dumps({"annotations": []}))
    with pytest.raises(UserError, match="no 'images' list"):
        load_coco_captions(bad, tmp_path)
    bad.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 2, "caption": "x"}]}))
    with pytest.raises(UserError, match="unknown image 2"):
        load_coco_captions(bad, tmp_path)
    with pytest.raises(UserError, match="dataset directory .* does not exist"):
        find_split(tmp_path / "absent", "val")

    copy = tmp_path / "copy"
    shutil.copytree(synthetic_dataset.out_dir, copy)
    (copy / "test" / "test_000003.png").unlink()
    with pytest.raises(UserError, match="1 of 12 images .* are missing") as info:
        load_split(copy, "test")
    assert info.value.reason == "missing_images"
    assert len(load_split(copy, "test", check_images=False)) == 12
    shutil.rmtree(copy / "test")
    with pytest.raises(UserError, match="image directory"):
        load_split(copy, "test")
