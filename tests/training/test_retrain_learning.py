"""Learning acceptance for the loop: users rename a concept and the promoted version learns it; users
type random words and the gate keeps the candidate out. Real storage, training, captioning and scoring.

Starts from the session's `trained_tiny_model` (the tiny preset trained on synthetic shapes), registered
and promoted as the active version, as an operator would after `capbot train`.

Each test runs once per seed in CAPBOT_TEST_RETRAIN_SEEDS (default "0"; e.g. "0,1,2" checks that the
assertions hold across seeds while the session fixture is trained only once). The seed drives the base
subset, the fine-tune and the random words; a seed gives the same run each time on one machine.
"""

from __future__ import annotations

import os
import random
import re

import pytest

from inference.captioner import LocalCaptioner
from inference.modeldir import load_metadata
from storage import db, registry, runs
from training.concepts import concept_accuracy
from training.data.coco import load_split
from training.data.synthetic import generate_synthetic, load_scenes
from training.retrain import retrain

from tests.training.retrain_support import add_feedback, config_for, open_store

# Whichever learning module runs first trains the shared `trained_tiny_model` (~5 min on 2 idle cores).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200), pytest.mark.usefixtures("one_torch_thread")]

N_FEEDBACK = 40  # "a few dozen" corrected images
USERS = tuple(f"user{n}" for n in range(6))  # corrections come from several people, as a rename needs
SEEDS = [int(seed) for seed in os.environ.get("CAPBOT_TEST_RETRAIN_SEEDS", "0").split(",")]
NONSENSE = [f"{a}{b}" for a in ("zor", "plim", "vask", "quen", "drub", "fep") for b in ("ax", "ilo", "unt", "ek")]


@pytest.fixture(scope="module")
def fresh_scenes(tmp_path_factory, trained_tiny_model):
    """Images the model has never seen (same shapes as its training data): feedback comes from `train`,
    the concept check uses `test`."""
    shapes = sorted({scene.main.shape for scene in load_scenes(trained_tiny_model.data_dir, "train").values()})
    out = tmp_path_factory.mktemp("fresh_scenes")
    generate_synthetic(out, n_train=240, n_val=4, n_test=240, seed=23, image_size=64, shapes=shapes)
    return out


def _rename(caption: str) -> str:
    return re.sub(r"\bcircle(s?)\b", r"ball\1", caption)


def _active_store(tmp_path, model_dir):
    engine, blobs = open_store(f"sqlite:///{tmp_path / 'capbot.db'}", tmp_path)
    with db.session_scope(engine) as session:
        version = load_metadata(model_dir).version
        registry.register_version(session, version_id=version, location=str(model_dir))
        registry.promote(session, version)
    return engine, blobs


def _caption_all(model_location, paths) -> list[str]:
    captioner = LocalCaptioner(model_location, device="cpu")
    try:
        return [c.text for c in captioner.caption([p.read_bytes() for p in paths])]
    finally:
        captioner.close()


def _feedback(dataset_dir, model_dir, select, correct) -> list[tuple]:
    """(image, what the active model said, the user's correction) for up to N_FEEDBACK selected images."""
    train = load_split(dataset_dir, "train")
    scenes = load_scenes(dataset_dir, "train")
    chosen = [item for item in train.items if select(scenes[item.image_id])][:N_FEEDBACK]
    said = _caption_all(model_dir, [item.path for item in chosen])
    return [(item.path, model, correct(item)) for item, model in zip(chosen, said)]


def _random_words(seed: int):
    rng = random.Random(seed)
    return lambda item: " ".join(rng.sample(NONSENSE, 5))


def _config(engine, blobs, tmp_path, model_dir, base_data, seed):
    # The tiny model already tells the shapes apart: only the words change, so the encoder stays frozen.
    # Feedback is 10% of the mix (each image listed 4 times, 9 base images for each): many distinct base
    # images keep the other shapes where they were. The rename itself reaches the base references through
    # `training.data.renames`, so the default-sized base CIDEr tolerance applies.
    return config_for(engine, blobs, tmp_path, model_dir, base_data, min_feedback=20, held_out_fraction=0.25,
                      min_held_out=8, feedback_fraction=0.1, feedback_repeats=4, freeze_encoder=True, epochs=6,
                      learning_rate=5e-4, batch_size=16, cider_tolerance=0.05, min_feedback_gain=0.1,
                      base_eval_limit=60, seed=seed)


def _accuracy(model_location, dataset_dir, aliases=None):
    test = load_split(dataset_dir, "test")
    said = _caption_all(model_location, [item.path for item in test.items])
    predictions = {item.image_id: text for item, text in zip(test.items, said)}
    return concept_accuracy(predictions, load_scenes(dataset_dir, "test"), aliases=aliases), predictions


def _others(accuracy_by_shape: dict) -> float:
    rows = [v for k, v in accuracy_by_shape.items() if k != "circle"]
    return sum(v["both"] * v["n"] for v in rows) / sum(v["n"] for v in rows)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_renamed_concept_is_learned_and_promoted(tmp_path, trained_tiny_model, fresh_scenes, seed):
    model_dir, base_data = trained_tiny_model.model_dir, trained_tiny_model.data_dir
    engine, blobs = _active_store(tmp_path, model_dir)
    add_feedback(engine, blobs, _feedback(fresh_scenes, model_dir, lambda scene: scene.main.shape == "circle",
                                          lambda item: _rename(item.captions[0])), users=USERS)

    result = retrain(_config(engine, blobs, tmp_path, model_dir, base_data, seed))
    print(f"seed {seed}:", result.status, result.message, result.data_counts, result.renames)

    assert result.status == "promoted", result.message
    assert {(r.old, r.new) for r in result.renames} == {("circle", "ball"), ("circles", "balls")}
    with db.session_scope(engine) as session:
        active = registry.get_active(session)
    assert active.id == result.candidate_version and active.parent_id == load_metadata(model_dir).version
    before, _ = _accuracy(model_dir, fresh_scenes)
    after, said = _accuracy(active.location, fresh_scenes, aliases={"circle": "ball"})
    recognised, renamed = before["by_shape"]["circle"]["shape"], after["by_shape"]["circle"]["shape"]
    print(f"seed {seed}: circles called circle before {recognised:.3f}, ball after {renamed:.3f}; "
          f"others before/after {_others(before['by_shape']):.3f} {_others(after['by_shape']):.3f}")
    # With the encoder frozen, the new word can only reach the circles the model recognises: the promoted
    # version says "ball" about as often as the active one said "circle" (seeds 0-5: 80-86% against 84.5%,
    # the misses being circles it took for other shapes before too).
    assert renamed >= recognised - 0.1, said
    assert _others(after["by_shape"]) >= _others(before["by_shape"]) - 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_random_word_feedback_is_not_promoted_and_the_reason_is_recorded(tmp_path, trained_tiny_model, fresh_scenes,
                                                                         seed):
    model_dir, base_data = trained_tiny_model.model_dir, trained_tiny_model.data_dir
    engine, blobs = _active_store(tmp_path, model_dir)
    add_feedback(engine, blobs, _feedback(fresh_scenes, model_dir, lambda scene: True, _random_words(5 + seed)),
                 users=USERS)

    result = retrain(_config(engine, blobs, tmp_path, model_dir, base_data, seed))
    print(f"seed {seed}:", result.status, result.message, result.data_counts, result.renames)

    assert result.status == "not_promoted", result.message
    assert result.renames == []  # random words are no systematic rename, however many users type them
    with db.session_scope(engine) as session:
        assert registry.get_active(session).location == str(model_dir)
        candidate = registry.get_version(session, result.candidate_version)
        run = runs.get_run(session, result.run_id)
    assert candidate.status == "candidate" and candidate.metrics["gate"]["reason"] == result.message
    assert run.status == "not_promoted" and run.reason == result.message
