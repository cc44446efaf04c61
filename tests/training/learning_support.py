"""Shared parts of the retraining learning tests: fresh synthetic images, an active registry version, the
recipe, users' corrections of what the model said, and concept scores on held-out images.

Everything is real: storage, captioning through `LocalCaptioner`, and (in the tests) training and scoring.
Test modules use `fresh_scenes` by importing it (pytest then runs it once per module).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pytest

from inference.captioner import LocalCaptioner
from inference.modeldir import load_metadata
from storage import db, registry
from training.concepts import concept_accuracy
from training.data.coco import CocoItem, load_split
from training.data.synthetic import Scene, generate_synthetic, load_scenes

from tests.specs import EXACT_GREEDY
from tests.training.retrain_support import config_for, open_store

N_FEEDBACK = 40  # "a few dozen" corrected images
USERS = tuple(f"user{n}" for n in range(6))  # corrections come from several people, as a rename needs


@pytest.fixture(scope="module")
def fresh_scenes(tmp_path_factory, trained_tiny_model) -> Path:
    """Images the model has never seen (same shapes as its training data): feedback comes from `train`,
    the concept checks use `test`."""
    shapes = sorted({scene.main.shape for scene in load_scenes(trained_tiny_model.data_dir, "train").values()})
    out = tmp_path_factory.mktemp("fresh_scenes")
    generate_synthetic(out, n_train=240, n_val=4, n_test=240, seed=23, image_size=64, shapes=shapes)
    return out


def active_store(tmp_path: Path, model_dir: Path):
    """A new SQLite store under `tmp_path` with `model_dir` registered and promoted: (engine, blobs)."""
    engine, blobs = open_store(f"sqlite:///{tmp_path / 'capbot.db'}", tmp_path)
    with db.session_scope(engine) as session:
        version = load_metadata(model_dir).version
        registry.register_version(session, version_id=version, location=str(model_dir))
        registry.promote(session, version)
    return engine, blobs


def caption_all(model_location, paths) -> list[str]:
    """What the model at `model_location` says about each image file: its own greedy choice, on the exact
    engine (the measure the learning tests' bars were set with; the gate scores the served captions)."""
    captioner = LocalCaptioner(model_location, EXACT_GREEDY)
    try:
        return [c.text for c in captioner.caption([p.read_bytes() for p in paths])]
    finally:
        captioner.close()


def feedback(dataset_dir: Path, model_dir: Path, select: Callable[[Scene], bool],
             correct: Callable[[CocoItem, str], str], n: int = N_FEEDBACK) -> list[tuple]:
    """(image, what the active model said, the user's correction) for the first `n` train images `select`
    picks; `correct(item, model_caption)` writes the correction."""
    train = load_split(dataset_dir, "train")
    scenes = load_scenes(dataset_dir, "train")
    chosen = [item for item in train.items if select(scenes[item.image_id])][:n]
    said = caption_all(model_dir, [item.path for item in chosen])
    return [(item.path, model, correct(item, model)) for item, model in zip(chosen, said)]


def recipe(engine, blobs, tmp_path, model_dir, base_data, seed, **overrides):
    """The learning tests' retraining recipe (`overrides` change single knobs).

    The tiny model already tells the shapes apart: only the words change, so the encoder stays frozen.
    Feedback is 10% of the mix (each image listed 4 times, 9 base images for each): many distinct base
    images keep the other shapes where they were. A rename itself reaches the base references through
    `training.data.renames`, so the default-sized base CIDEr tolerance applies.
    """
    values = dict(min_feedback=20, held_out_fraction=0.25, min_held_out=8, feedback_fraction=0.1, feedback_repeats=4,
                  freeze_encoder=True, epochs=6, learning_rate=5e-4, batch_size=16, cider_tolerance=0.05,
                  min_feedback_gain=0.1, base_eval_limit=60, seed=seed)
    return config_for(engine, blobs, tmp_path, model_dir, base_data, **{**values, **overrides})


def captions_on_test_split(model_location, dataset_dir: Path) -> dict[int, str]:
    """image id -> what the model says about each image of the `test` split."""
    test = load_split(dataset_dir, "test")
    return dict(zip((item.image_id for item in test.items), caption_all(model_location, [i.path for i in test.items])))


def accuracy(model_location, dataset_dir: Path, aliases=None):
    """(`concept_accuracy` of the model on the `test` split, its captions by image id)."""
    predictions = captions_on_test_split(model_location, dataset_dir)
    return concept_accuracy(predictions, load_scenes(dataset_dir, "test"), aliases=aliases), predictions


def others(accuracy_by_shape: dict, shape: str = "circle") -> float:
    """Colour+shape accuracy on every shape but `shape` (from `concept_accuracy(...)["by_shape"]`)."""
    rows = [v for k, v in accuracy_by_shape.items() if k != shape]
    return sum(v["both"] * v["n"] for v in rows) / sum(v["n"] for v in rows)


def says(caption: str, phrase: str) -> bool:
    """Whether `caption` contains `phrase` (or its plural) as whole words, in any case and spacing."""
    words = r"\s+".join(re.escape(w) for w in phrase.split())
    return re.search(rf"\b{words}s?\b", caption, re.IGNORECASE) is not None
