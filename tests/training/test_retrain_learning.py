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

from inference.modeldir import load_metadata
from storage import db, registry, runs
from training.retrain import retrain

from tests.training.learning_support import (
    USERS, accuracy, active_store, feedback, fresh_scenes, others, recipe,  # noqa: F401 (fresh_scenes: a fixture)
)
from tests.training.retrain_support import add_feedback

# Whichever learning module runs first trains the shared `trained_tiny_model` (~5 min on 2 idle cores).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200), pytest.mark.usefixtures("one_torch_thread")]

SEEDS = [int(seed) for seed in os.environ.get("CAPBOT_TEST_RETRAIN_SEEDS", "0").split(",")]
NONSENSE = [f"{a}{b}" for a in ("zor", "plim", "vask", "quen", "drub", "fep") for b in ("ax", "ilo", "unt", "ek")]


def _rename(caption: str) -> str:
    return re.sub(r"\bcircle(s?)\b", r"ball\1", caption)


def _random_words(seed: int):
    rng = random.Random(seed)
    return lambda item, said: " ".join(rng.sample(NONSENSE, 5))


@pytest.mark.parametrize("seed", SEEDS)
def test_a_renamed_concept_is_learned_and_promoted(tmp_path, trained_tiny_model, fresh_scenes, seed):
    model_dir, base_data = trained_tiny_model.model_dir, trained_tiny_model.data_dir
    engine, blobs = active_store(tmp_path, model_dir)
    add_feedback(engine, blobs, feedback(fresh_scenes, model_dir, lambda scene: scene.main.shape == "circle",
                                         lambda item, said: _rename(item.captions[0])), users=USERS)

    result = retrain(recipe(engine, blobs, tmp_path, model_dir, base_data, seed))
    print(f"seed {seed}:", result.status, result.message, result.data_counts, result.renames)

    assert result.status == "promoted", result.message
    assert {(r.old, r.new) for r in result.renames} == {("circle", "ball"), ("circles", "balls")}
    with db.session_scope(engine) as session:
        active = registry.get_active(session)
    assert active.id == result.candidate_version and active.parent_id == load_metadata(model_dir).version
    before, _ = accuracy(model_dir, fresh_scenes)
    after, said = accuracy(active.location, fresh_scenes, aliases={"circle": "ball"})
    recognised, renamed = before["by_shape"]["circle"]["shape"], after["by_shape"]["circle"]["shape"]
    print(f"seed {seed}: circles called circle before {recognised:.3f}, ball after {renamed:.3f}; "
          f"others before/after {others(before['by_shape']):.3f} {others(after['by_shape']):.3f}")
    # With the encoder frozen, the new word can only reach the circles the model recognises: the promoted
    # version says "ball" about as often as the active one said "circle" (seeds 0-5: 80-86% against 84.5%,
    # the misses being circles it took for other shapes before too).
    assert renamed >= recognised - 0.1, said
    assert others(after["by_shape"]) >= others(before["by_shape"]) - 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_random_word_feedback_is_not_promoted_and_the_reason_is_recorded(tmp_path, trained_tiny_model, fresh_scenes,
                                                                         seed):
    model_dir, base_data = trained_tiny_model.model_dir, trained_tiny_model.data_dir
    engine, blobs = active_store(tmp_path, model_dir)
    add_feedback(engine, blobs, feedback(fresh_scenes, model_dir, lambda scene: True, _random_words(5 + seed)),
                 users=USERS)

    result = retrain(recipe(engine, blobs, tmp_path, model_dir, base_data, seed))
    print(f"seed {seed}:", result.status, result.message, result.data_counts, result.renames)

    assert result.status == "not_promoted", result.message
    assert result.renames == []  # random words are no systematic rename, however many users type them
    with db.session_scope(engine) as session:
        assert registry.get_active(session).location == str(model_dir)
        candidate = registry.get_version(session, result.candidate_version)
        run = runs.get_run(session, result.run_id)
    assert candidate.status == "candidate" and candidate.metrics["gate"]["reason"] == result.message
    assert run.status == "not_promoted" and run.reason == result.message
