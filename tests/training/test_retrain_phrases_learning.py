"""Learning acceptance for multi-word feedback: users rename a concept to a phrase, or add an attribute the
model leaves out, and the promoted version says it. Real storage, training, captioning and scoring, from
the session's `trained_tiny_model` (promoted as the active version), with the recipe of
test_retrain_learning.py (`learning_support.recipe`).

Each test runs once per seed in CAPBOT_TEST_RETRAIN_SEEDS (default "0"), as there.
"""

from __future__ import annotations

import os
import re

import pytest

from storage import db, registry
from training.concepts import concept_accuracy, parse_concepts
from training.data.synthetic import COLOURS, SIZE_WORDS, load_scenes
from training.retrain import retrain

from tests.training.learning_support import (  # noqa: F401 (fresh_scenes: a fixture)
    USERS, active_store, captions_on_test_split, feedback, fresh_scenes, others, recipe, says,
)
from tests.training.retrain_support import add_feedback

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400), pytest.mark.usefixtures("one_torch_thread")]

SEEDS = [int(seed) for seed in os.environ.get("CAPBOT_TEST_RETRAIN_SEEDS", "0").split(",")]


@pytest.fixture(scope="module")
def before(trained_tiny_model, fresh_scenes, one_torch_thread):
    """What the active (fixture) model says about each held-out test image, by image id."""
    return captions_on_test_split(trained_tiny_model.model_dir, fresh_scenes)


def _promoted(engine, result):
    assert result.status == "promoted", result.message
    with db.session_scope(engine) as session:
        active = registry.get_active(session)
    assert active.id == result.candidate_version
    return active.location


@pytest.mark.parametrize("seed", SEEDS)
def test_a_word_renamed_to_a_phrase_is_adopted_and_learned(tmp_path, trained_tiny_model, fresh_scenes, before, seed):
    model_dir, base_data = trained_tiny_model.model_dir, trained_tiny_model.data_dir
    engine, blobs = active_store(tmp_path, model_dir)
    to_disc = lambda item, said: re.sub(r"\bcircle(s?)\b", r"round disc\1", item.captions[0])  # noqa: E731
    add_feedback(engine, blobs, feedback(fresh_scenes, model_dir, lambda scene: scene.main.shape == "circle", to_disc),
                 users=USERS)

    result = retrain(recipe(engine, blobs, tmp_path, model_dir, base_data, seed))
    print(f"seed {seed}:", result.status, result.message, result.data_counts, result.renames)

    assert {(r.old, r.new) for r in result.renames} == {("circle", "round disc"), ("circles", "round discs")}
    after = captions_on_test_split(_promoted(engine, result), fresh_scenes)
    scenes = load_scenes(fresh_scenes, "test")
    circles = [i for i, scene in scenes.items() if scene.main.shape == "circle"]
    recognised = sum(says(before[i], "circle") for i in circles) / len(circles)
    renamed = sum(says(after[i], "round disc") and not says(after[i], "circle") for i in circles) / len(circles)
    others_before = others(concept_accuracy(before, scenes)["by_shape"])
    others_after = others(concept_accuracy(after, scenes)["by_shape"])
    print(f"seed {seed}: circles called circle before {recognised:.3f}, round disc after {renamed:.3f}; "
          f"others before/after {others_before:.3f} {others_after:.3f}")
    # As for a one-word rename: the new phrase reaches the circles the model recognised (seeds 0-2: 94.4%
    # of 71 held-out circles against 93.0% called circles before), and the other shapes stay.
    assert renamed >= recognised - 0.1, {i: after[i] for i in circles}
    assert others_after >= others_before - 0.05


def _with_size(scene, said: str) -> str:
    """A user's correction: the model's caption with the main object's size added (or, where the model
    misread the colour or shape, the user's own caption naming all three)."""
    main, word = scene.main, SIZE_WORDS[scene.main.size][0]  # everyone writes "small" / "large"
    if parse_concepts(said) != (main.colour, main.shape):
        return f"a {word} {main.colour} {main.shape}"
    return re.sub(r"\b(" + "|".join(COLOURS) + r")\b", lambda m: f"{word} {m.group(0)}", said, count=1)


def _names_size(caption: str, size: str) -> bool:
    return any(says(caption, word) for word in SIZE_WORDS[size])


@pytest.mark.parametrize("seed", SEEDS)
def test_an_added_attribute_is_learned_without_a_rename(tmp_path, trained_tiny_model, fresh_scenes, before, seed):
    model_dir, base_data = trained_tiny_model.model_dir, trained_tiny_model.data_dir
    engine, blobs = active_store(tmp_path, model_dir)
    train_scenes = load_scenes(fresh_scenes, "train")
    corrections = feedback(fresh_scenes, model_dir, lambda scene: scene.main.count == 1,
                           lambda item, said: _with_size(train_scenes[item.image_id], said))
    add_feedback(engine, blobs, corrections, users=USERS)

    # Feedback is 15% of the mix here, not 10%: about half the base references of a single shape name its
    # size and half do not, and at 10% that pull left the size out of many captions (seeds 0-2: right size
    # on 82.1%, 56.2%, 55.4% of held-out single shapes). At 15%: 95.5%, 92.9%, 92.9%, 88.4%, 84.8% (seeds
    # 0-4). At 20% and 30% base CIDEr fell past the gate's tolerance at one seed of three.
    result = retrain(recipe(engine, blobs, tmp_path, model_dir, base_data, seed, feedback_fraction=0.15))
    print(f"seed {seed}:", result.status, result.message, result.data_counts, result.renames)

    assert result.renames == []  # "a red circle" -> "a large red circle" adds a word, it renames none
    after = captions_on_test_split(_promoted(engine, result), fresh_scenes)
    scenes = load_scenes(fresh_scenes, "test")
    singles = [i for i, scene in scenes.items() if scene.main.count == 1]  # groups are always small
    right = {name: sum(_names_size(said[i], scenes[i].main.size) for i in singles) / len(singles)
             for name, said in (("before", before), ("after", after))}
    wrong = sum(_names_size(after[i], "small" if scenes[i].main.size == "large" else "large")
                for i in singles) / len(singles)
    both = {name: concept_accuracy(said, scenes)["both"] for name, said in (("before", before), ("after", after))}
    print(f"seed {seed}: right size on {len(singles)} single shapes before {right['before']:.3f} after "
          f"{right['after']:.3f} (wrong size {wrong:.3f}); colour+shape before/after {both['before']:.3f} "
          f"{both['after']:.3f}")
    # The active model leaves the size out (names it on 0.9% of them), the promoted one says it, rarely
    # wrongly (0-1.8%), and still names colour and shape (96.3% before, 94.2-97.1% after, seeds 0-4).
    assert right["before"] <= 0.1
    assert right["after"] >= 0.8, {i: after[i] for i in singles}
    assert wrong <= 0.05
    assert both["after"] >= both["before"] - 0.05
