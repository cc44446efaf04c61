"""Learning acceptance of the retraining loop for a second family (issue 24): users of the trained tiny BLIP
call circles "balls"; a retraining round (real storage, BLIP fine-tuning, captioning and the gate) promotes a
version that says "ball" for the circles of held-out images and still names the other shapes.

The same round as the first of test_retrain_learning.py's three, from `trained_blip_model`.
"""

from __future__ import annotations

import re

import pytest

from storage import db, registry
from training.data.synthetic import generate_synthetic, load_scenes
from training.retrain import retrain

from tests.training.learning_support import USERS, accuracy, active_store, feedback, others, recipe
from tests.training.retrain_support import add_feedback

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400), pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def blip_scenes(tmp_path_factory, trained_blip_model):
    """Images the model has never seen, of the shapes it learned (as learning_support's `fresh_scenes`)."""
    shapes = sorted({scene.main.shape for scene in load_scenes(trained_blip_model.data_dir, "train").values()})
    out = tmp_path_factory.mktemp("blip_scenes")
    generate_synthetic(out, n_train=240, n_val=4, n_test=240, seed=23, image_size=64, shapes=shapes)
    return out


@pytest.fixture(scope="module")
def renamed(tmp_path_factory, one_torch_thread, trained_blip_model, blip_scenes):
    model_dir, base_data = trained_blip_model.model_dir, trained_blip_model.data_dir
    root = tmp_path_factory.mktemp("blip_rename")
    engine, blobs = active_store(root, model_dir)
    before, _ = accuracy(model_dir, blip_scenes)

    def users_say(item, said):
        return re.sub(r"\bcircle(s?)\b", lambda m: "balls" if m.group(1) else "ball", item.captions[0])

    add_feedback(engine, blobs, feedback(blip_scenes, model_dir, lambda scene: scene.main.shape == "circle", users_say),
                 users=USERS)
    # The ViT+GPT-2 tests' recipe with each feedback image listed 8 times instead of 4. With 4, the round taught
    # "ball" on 91.5% of held-out circles at learning seed 0 but 74.6% at seed 1, where the renamed model called
    # the other circles squares; with 8, 90.1% and 87.3% (the fixture recognised 93% and 87% of them; 2026-12-07).
    result = retrain(recipe(engine, blobs, root, model_dir, base_data, 0, feedback_repeats=8))
    with db.session_scope(engine) as session:
        active = registry.get_active(session)
    after, captions = accuracy(active.location, blip_scenes, aliases={"circle": "ball"})
    engine.dispose()
    print(f"blip circle->ball: {result.status} ({result.message}); before {before['by_shape']}; after {after['by_shape']}")
    return result, active, before, after


def test_the_round_is_promoted_with_the_rename(renamed):
    result, active, _, _ = renamed
    assert result.status == "promoted", result.message
    assert ("circle", "ball") in {(r.old, r.new) for r in result.renames}
    assert active.id == result.candidate_version


def test_the_rename_is_adopted_on_held_out_circles_and_the_other_shapes_are_kept(renamed):
    _, _, before, after = renamed
    as_ball = after["by_shape"]["circle"]["shape"]
    assert as_ball >= 0.8 and as_ball >= before["by_shape"]["circle"]["shape"] - 0.1, (as_ball, before["by_shape"])
    assert others(after["by_shape"]) >= others(before["by_shape"]) - 0.1, (after["by_shape"], before["by_shape"])
