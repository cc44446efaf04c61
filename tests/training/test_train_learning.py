"""Learning acceptance: the tiny preset trained from scratch on synthetic shapes learns what it sees.

Held-out test images are captioned through the product's own `LocalCaptioner`; concepts are scored
against the generator's ground truth, and COCO metrics against its reference captions.
"""

from __future__ import annotations

import pytest

from inference.captioner import LocalCaptioner
from tests.specs import exact_greedy
from training.concepts import concept_accuracy
from training.data.coco import load_split
from training.data.synthetic import load_scenes
from training.evaluate import CaptionScorer, evaluate_model

# Training the shared fixture takes ~5 minutes on one idle core; a busy machine has taken over 20 (2026-12-02).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def reports(trained_tiny_model):
    """Test-split evaluations of the trained model and of its untrained self, sharing one METEOR JVM."""
    test = load_split(trained_tiny_model.data_dir, "test")
    with CaptionScorer() as scorer:
        return {
            name: evaluate_model(LocalCaptioner(path, exact_greedy(batch_size=64)), test, batch_size=64, scorer=scorer)
            for name, path in (("trained", trained_tiny_model.model_dir), ("untrained", trained_tiny_model.untrained_dir))
        }


def test_names_colour_and_shape_of_held_out_images(trained_tiny_model, reports, record_property):
    scenes = load_scenes(trained_tiny_model.data_dir, "test")
    accuracy = concept_accuracy(reports["trained"].predictions, scenes)
    record_property("concept_accuracy", {key: accuracy[key] for key in ("n", "colour", "shape", "both")})  # --junitxml
    assert accuracy["n"] == len(scenes)
    assert accuracy["both"] >= 0.90, accuracy
    untrained = concept_accuracy(reports["untrained"].predictions, scenes)
    assert untrained["both"] < 0.5, untrained  # it is the training that names them


def test_beats_its_untrained_self_on_every_coco_metric(reports):
    trained, untrained = reports["trained"].metrics.scores(), reports["untrained"].metrics.scores()
    assert set(trained) == {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider"}
    for metric, score in trained.items():
        assert score > untrained[metric], (metric, score, untrained[metric])


def test_training_recorded_its_lineage_and_scores(trained_tiny_model):
    from inference.modeldir import load_metadata

    result = trained_tiny_model.result
    meta = load_metadata(trained_tiny_model.model_dir)
    assert meta.made_by == "train" and meta.parent_version == load_metadata(trained_tiny_model.untrained_dir).version
    assert meta.version == result.version and meta.extra["metrics"]["cider"] == pytest.approx(result.metrics["cider"])
    losses = [loss for _, loss in result.losses]
    assert losses[-1] < losses[0] / 3  # the loss fell a long way
