"""The synthetic generator: deterministic, valid COCO JSON, ground truth that matches the pixels."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storage.errors import UserError
from training.data.synthetic import COLOURS, SHAPES, generate_synthetic, load_scenes


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    a = generate_synthetic(tmp_path / "a", n_train=8, n_val=2, n_test=2, seed=3)
    b = generate_synthetic(tmp_path / "b", n_train=8, n_val=2, n_test=2, seed=3)
    c = generate_synthetic(tmp_path / "c", n_train=8, n_val=2, n_test=2, seed=4)
    files_a, files_b, files_c = _files(a.out_dir), _files(b.out_dir), _files(c.out_dir)
    assert files_a == files_b
    assert files_a.keys() == files_c.keys()
    images = [k for k in files_a if k.endswith(".png")]
    assert sum(files_a[k] != files_c[k] for k in images) >= len(images) - 1
    assert files_a["annotations/captions_train.json"] != files_c["annotations/captions_train.json"]


def test_an_image_does_not_depend_on_other_split_sizes(tmp_path):
    small = generate_synthetic(tmp_path / "s", n_train=3, n_val=1, n_test=2, seed=0)
    large = generate_synthetic(tmp_path / "l", n_train=9, n_val=4, n_test=2, seed=0)
    for name in ("train/train_000002.png", "test/test_000001.png"):
        assert (small.out_dir / name).read_bytes() == (large.out_dir / name).read_bytes()


def test_rerun_into_same_directory_removes_stale_images(tmp_path):
    generate_synthetic(tmp_path, n_train=6, n_val=1, n_test=1)
    generate_synthetic(tmp_path, n_train=2, n_val=1, n_test=1)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["train_000000.png", "train_000001.png"]


def test_writes_valid_coco_captions(synthetic_dataset):
    root = synthetic_dataset.out_dir
    all_ids: set[int] = set()
    for split, expected in (("train", 40), ("val", 12), ("test", 12)):
        data = json.loads((root / "annotations" / f"captions_{split}.json").read_text())
        assert {"info", "licenses", "images", "annotations"} <= data.keys()
        ids = {img["id"] for img in data["images"]}
        assert len(ids) == len(data["images"]) == expected
        assert not ids & all_ids  # ids unique across splits, as in COCO
        all_ids |= ids
        for img in data["images"]:
            with Image.open(root / split / img["file_name"]) as im:
                assert im.size == (img["width"], img["height"]) == (64, 64)
                assert im.mode == "RGB"
        per_image = Counter(a["image_id"] for a in data["annotations"])
        assert set(per_image) == ids and set(per_image.values()) == {5}
        assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])
        by_image: dict[int, set[str]] = {}
        for a in data["annotations"]:
            assert isinstance(a["caption"], str) and a["caption"].strip() == a["caption"] != ""
            by_image.setdefault(a["image_id"], set()).add(a["caption"])
        assert all(len(texts) == 5 for texts in by_image.values())  # five distinct references
    assert synthetic_dataset.images == {"train": 40, "val": 12, "test": 12}
    assert synthetic_dataset.captions == {"train": 200, "val": 60, "test": 60}


def test_every_caption_names_the_main_colour_and_shape_first(synthetic_dataset):
    root = synthetic_dataset.out_dir
    scenes = load_scenes(root, "train")
    data = json.loads((root / "annotations" / "captions_train.json").read_text())
    assert set(scenes) == {img["id"] for img in data["images"]}
    for ann in data["annotations"]:
        words = ann["caption"].split()
        main = scenes[ann["image_id"]].main
        colours = [w for w in words if w in COLOURS]
        shapes = [w.removesuffix("s") for w in words if w.removesuffix("s") in SHAPES]
        assert colours[0] == main.colour and shapes[0] == main.shape, ann["caption"]


def test_scene_ground_truth_matches_the_pixels(synthetic_dataset):
    """The main object's colour is what the image shows at the centre of each of its boxes."""
    root = synthetic_dataset.out_dir
    for scene in load_scenes(root, "val").values():
        pixels = np.asarray(Image.open(root / "val" / scene.file_name), dtype=int)
        main = scene.main
        assert len(main.boxes) == main.count
        for x0, y0, x1, y1 in main.boxes:
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
            centre = pixels[cy, cx]
            nearest = min(COLOURS, key=lambda c: np.abs(np.array(COLOURS[c]) - centre).sum())
            assert nearest == main.colour, (scene.file_name, centre)


def test_concepts_are_varied(tmp_path):
    summary = generate_synthetic(tmp_path, n_train=200, n_val=0, n_test=1, seed=1)
    mains = [s.main for s in load_scenes(summary.out_dir, "train").values()]
    assert {m.colour for m in mains} == set(COLOURS)
    assert {m.shape for m in mains} == set(SHAPES)
    assert {m.count for m in mains} == {1, 2, 3}
    assert {m.position for m in mains} == {"left", "right", "top", "bottom", "centre"}
    assert {m.size for m in mains} == {"small", "large"}
    assert max(Counter(m.shape for m in mains).values()) < 0.4 * len(mains)


def test_restricted_concepts_and_image_size(tmp_path):
    summary = generate_synthetic(tmp_path, n_train=30, n_val=0, n_test=1, image_size=96, colours=["red", "blue"], shapes=["circle", "square"])
    scenes = load_scenes(summary.out_dir, "train")
    assert {o.colour for s in scenes.values() for o in s.objects} <= {"red", "blue"}
    assert {o.shape for s in scenes.values() for o in s.objects} <= {"circle", "square"}
    assert Image.open(summary.out_dir / "train" / "train_000000.png").size == (96, 96)


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"n_train": 0, "n_val": 0, "n_test": 0}, "bad_sizes"),
        ({"n_train": 1, "n_val": 0, "n_test": 0, "image_size": 8}, "bad_size"),
        ({"n_train": 1, "n_val": 0, "n_test": 0, "colours": ["teal", "red"]}, "bad_concepts"),
    ],
)
def test_invalid_arguments_are_user_errors(tmp_path, kwargs, reason):
    with pytest.raises(UserError) as info:
        generate_synthetic(tmp_path, **kwargs)
    assert info.value.reason == reason


def test_load_scenes_errors(tmp_path):
    with pytest.raises(UserError, match="no scene ground truth"):
        load_scenes(tmp_path, "test")
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "scenes_test.json").write_text("{not json")
    with pytest.raises(UserError, match="not a valid scenes file"):
        load_scenes(tmp_path, "test")


def test_cli_data_synthetic(tmp_path, capsys):
    from capbot.cli import main

    out = tmp_path / "data"
    assert main(["data", "synthetic", "--out", str(out), "--train", "4", "--val", "2", "--test", "3", "--seed", "5", "--image-size", "48"]) == 0
    assert "train 4, val 2, test 3 images, 45 captions" in capsys.readouterr().out
    scenes = load_scenes(out, "test")
    assert len(scenes) == 3 and Image.open(out / "test" / "test_000002.png").size == (48, 48)
    api = generate_synthetic(tmp_path / "api", n_train=4, n_val=2, n_test=3, seed=5, image_size=48)
    assert _files(out) == _files(api.out_dir)  # the CLI is the library call

    assert main(["data", "synthetic", "--out", str(tmp_path / "bad"), "--train", "1", "--image-size", "8"]) == 2
    assert "error: image size must be between 32 and 1024" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
