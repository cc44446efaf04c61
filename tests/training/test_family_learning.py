"""Learning acceptance for a family other than ViT+GPT-2 (issue 24): a tiny BLIP, built as a plain transformers user
builds one and trained from scratch with `capbot train` (`trained_blip_model`, `TRAINED_BLIP_RECIPE`), names what
it sees on held-out images, and a retraining round adopts a rename users wrote in their corrections.

The same bars as the ViT+GPT-2 fixture's (tests/training/test_train_learning.py, test_retrain_learning.py), through
the same product code: `LocalCaptioner` captions, `training.retrain.retrain` runs the round through the gate.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.captioner import LocalCaptioner
from inference.families import family_of
from storage import db, registry
from tests.specs import exact_greedy
from tests.training.learning_support import USERS, accuracy, active_store, feedback, recipe
from tests.training.retrain_support import add_feedback
from training.concepts import concept_accuracy
from training.data.coco import load_split
from training.data.synthetic import generate_synthetic, load_scenes
from training.retrain import retrain

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400), pytest.mark.usefixtures("one_torch_thread")]


def _captions(model_dir, dataset_dir) -> dict[int, str]:
    test = load_split(dataset_dir, "test")
    captioner = LocalCaptioner(model_dir, exact_greedy(batch_size=64))
    try:
        texts = [c.text for c in captioner.caption([item.path.read_bytes() for item in test.items])]
    finally:
        captioner.close()
    return {item.image_id: text for item, text in zip(test.items, texts)}


def test_a_blip_trained_from_scratch_names_colour_and_shape_of_held_out_images(trained_blip_model, record_property):
    assert family_of(trained_blip_model.model_dir) == "blip"
    scenes = load_scenes(trained_blip_model.data_dir, "test")

    trained = concept_accuracy(_captions(trained_blip_model.model_dir, trained_blip_model.data_dir), scenes)
    record_property("concept_accuracy", {key: trained[key] for key in ("n", "colour", "shape", "both")})

    assert trained["n"] == len(scenes) == 200
    assert trained["both"] >= 0.90, trained
    untrained = concept_accuracy(_captions(trained_blip_model.untrained_dir, trained_blip_model.data_dir), scenes)
    assert untrained["both"] < 0.5, untrained  # it is the training that names them


@pytest.fixture(scope="module")
def blip_fresh_scenes(tmp_path_factory, trained_blip_model):
    """Images the BLIP has never seen, of its training shapes: feedback comes from `train`, checks use `test`."""
    shapes = sorted({scene.main.shape for scene in load_scenes(trained_blip_model.data_dir, "train").values()})
    out = tmp_path_factory.mktemp("blip_fresh_scenes")
    generate_synthetic(out, n_train=240, n_val=4, n_test=240, seed=23, image_size=64, shapes=shapes)
    return out


def test_a_retraining_round_teaches_a_blip_the_name_users_give_circles(tmp_path, trained_blip_model,
                                                                      blip_fresh_scenes):
    model_dir, base_data = trained_blip_model.model_dir, trained_blip_model.data_dir
    engine, blobs = active_store(tmp_path, model_dir)
    before, _ = accuracy(model_dir, blip_fresh_scenes)
    # Users call circles "balls": each corrects the model's caption of a circle with the reference, renamed.
    add_feedback(engine, blobs, feedback(blip_fresh_scenes, model_dir, lambda scene: scene.main.shape == "circle",
                                         lambda item, said: item.captions[0].replace("circle", "ball")), users=USERS)

    # The ViT+GPT-2 tests' recipe with each feedback image listed 8 times instead of 4. With 4, the round taught
    # "ball" on 91.5% of held-out circles at learning seed 0 but 74.6% at seed 1, where the renamed model called
    # the other circles squares; with 8, 90.1% and 87.3% (the fixture recognised 93% and 87% of them; 2026-12-07).
    result = retrain(recipe(engine, blobs, tmp_path, model_dir, base_data, 0, feedback_repeats=8))
    with db.session_scope(engine) as session:
        active = registry.get_active(session)
    after, captions = accuracy(active.location, blip_fresh_scenes, aliases={"circle": "ball"})
    print("blip rename round:", result.status, result.message, result.renames,
          {shape: after["by_shape"][shape]["shape"] for shape in after["by_shape"]}, "before", before["both"])

    assert result.status == "promoted", result.message
    assert ("circle", "ball") in {(r.old, r.new) for r in result.renames}
    assert active.id == result.candidate_version and family_of(Path(active.location)) == "blip"
    # The new model says "ball" where the old one said "circle", on held-out images...
    circles = after["by_shape"]["circle"]
    assert circles["shape"] >= 0.8 and circles["shape"] >= before["by_shape"]["circle"]["shape"] - 0.1, circles
    assert not any("circle" in text for text in captions.values())
    # ...and still names the other shapes and the colours as before.
    for shape in ("square", "triangle"):
        assert after["by_shape"][shape]["both"] >= before["by_shape"][shape]["both"] - 0.05, shape
    assert after["colour"] >= before["colour"] - 0.05
