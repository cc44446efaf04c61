"""Learning acceptance for a second family (issue 24): a tiny BLIP trained from scratch on synthetic shapes,
through BLIP's own labels, image path and engine, names what it sees on held-out images.

The same bar as the ViT+GPT-2 fixture's (test_train_learning.py): held-out test images captioned through the
product's `LocalCaptioner`, concepts scored against the generator's ground truth.
"""

from __future__ import annotations

import pytest

from inference.captioner import LocalCaptioner
from inference.families import family_of
from tests.specs import exact_greedy
from training.concepts import concept_accuracy
from training.data.coco import load_split
from training.data.synthetic import load_scenes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def _captions(model_dir, items) -> dict[int, str]:
    captioner = LocalCaptioner(model_dir, exact_greedy(batch_size=64))
    try:
        captions = captioner.caption([item.path.read_bytes() for item in items])
    finally:
        captioner.close()
    return {item.image_id: caption.text for item, caption in zip(items, captions)}


def test_blip_names_colour_and_shape_of_held_out_images(trained_blip_model, record_property):
    test = load_split(trained_blip_model.data_dir, "test")
    scenes = load_scenes(trained_blip_model.data_dir, "test")
    assert family_of(trained_blip_model.model_dir) == "blip"
    accuracy = concept_accuracy(_captions(trained_blip_model.model_dir, test.items), scenes)
    record_property("blip_concept_accuracy", {key: accuracy[key] for key in ("n", "colour", "shape", "both")})
    assert accuracy["n"] == len(scenes)
    assert accuracy["both"] >= 0.90, accuracy
    untrained = concept_accuracy(_captions(trained_blip_model.untrained_dir, test.items), scenes)
    assert untrained["both"] < 0.5, untrained  # it is the training that names them


def test_blip_training_recorded_its_scores_and_the_loss_fell(trained_blip_model):
    from inference.modeldir import load_metadata

    result = trained_blip_model.result
    meta = load_metadata(trained_blip_model.model_dir)
    assert meta.made_by == "train" and meta.parent_version is None  # the untrained model was plain transformers'
    assert meta.version == result.version and result.metrics["cider"] > 1.0
    losses = [loss for _, loss in result.losses]
    assert losses[-1] < losses[0] / 3
