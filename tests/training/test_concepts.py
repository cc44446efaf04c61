"""Concept scoring of generated captions against synthetic scene ground truth."""

from __future__ import annotations

import json

import pytest

from training.concepts import concept_accuracy, parse_concepts
from training.data.synthetic import load_scenes


def test_parse_first_colour_and_shape_words():
    assert parse_concepts("Two small BLUE squares, and a red circle.") == ("blue", "square")
    assert parse_concepts("there is a big star coloured orange") == ("orange", "star")
    assert parse_concepts("a dog on a white background") == (None, None)
    assert parse_concepts("three yellow balls") == ("yellow", None)
    assert parse_concepts("three yellow balls", aliases={"circle": "ball"}) == ("yellow", "ball")
    assert parse_concepts("a crate", aliases={"square": "box"}) == (None, None)
    assert parse_concepts("two boxes", aliases={"square": "box"}) == (None, "box")


def _first_references(root, split):
    data = json.loads((root / "annotations" / f"captions_{split}.json").read_text())
    refs: dict[int, str] = {}
    for ann in data["annotations"]:
        refs.setdefault(ann["image_id"], ann["caption"])
    return refs


def test_references_score_perfectly_and_wrong_captions_do_not(synthetic_dataset):
    root = synthetic_dataset.out_dir
    scenes = load_scenes(root, "train")
    perfect = concept_accuracy(_first_references(root, "train"), scenes)
    assert perfect["n"] == 40 and perfect["colour"] == perfect["shape"] == perfect["both"] == 1.0
    assert sum(v["n"] for v in perfect["by_shape"].values()) == 40
    assert all(v["both"] == 1.0 for v in perfect["by_colour"].values())

    # Always answering "a red circle": right exactly on the red / circle images.
    constant = concept_accuracy({i: "a red circle" for i in scenes}, scenes)
    reds = sum(s.main.colour == "red" for s in scenes.values())
    circles = sum(s.main.shape == "circle" for s in scenes.values())
    assert constant["colour"] == pytest.approx(reds / 40)
    assert constant["shape"] == pytest.approx(circles / 40)
    assert constant["by_shape"]["circle"]["shape"] == 1.0
    assert all(v["shape"] == 0.0 for k, v in constant["by_shape"].items() if k != "circle")
    assert sum(v["n"] for v in constant["by_size"].values()) == sum(v["n"] for v in constant["by_count"].values()) == 40
    assert set(constant["by_count"]) <= {1, 2, 3} and set(constant["by_size"]) <= {"small", "large"}
    small_circles = sum(s.main.shape == "circle" and s.main.size == "small" for s in scenes.values())
    assert constant["by_size"]["small"]["shape"] == pytest.approx(small_circles / constant["by_size"]["small"]["n"])


def test_aliases_require_the_new_word(synthetic_dataset):
    root = synthetic_dataset.out_dir
    scenes = load_scenes(root, "train")
    refs = _first_references(root, "train")
    renamed = {i: text.replace("circle", "ball") for i, text in refs.items()}
    circle_ids = [i for i, s in scenes.items() if s.main.shape == "circle"]
    assert circle_ids
    old_words = concept_accuracy(refs, scenes, aliases={"circle": "ball"})
    new_words = concept_accuracy(renamed, scenes, aliases={"circle": "ball"})
    assert old_words["by_shape"]["circle"]["shape"] == 0.0
    assert new_words["by_shape"]["circle"]["shape"] == 1.0
    assert new_words["shape"] == 1.0


def test_unknown_image_ids_are_rejected(synthetic_dataset):
    scenes = load_scenes(synthetic_dataset.out_dir, "val")
    with pytest.raises(KeyError, match="no scene"):
        concept_accuracy({123: "a red circle"}, scenes)
