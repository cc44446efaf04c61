"""Learning test: does a caption's confidence separate right captions from wrong ones?

The trained tiny fixture captions held-out synthetic scenes through the product's `LocalCaptioner` with the
serving options (`capbot.app.serving_options`: 3 beams, 2 alternatives) and CAPBOT_CONFIDENCE_VIEWS=4:
confidence scored on the image and 4 views of it moved by two pixels (off by default: it makes the
full-size CPU fast path 2-3x slower; the default's one pass gives 0.73 here, below the target); a caption is wrong when it does not name the main object's colour
and shape (`training.concepts`). The AUROC of "caption is wrong" against confidence is the chance that a
random wrong caption gets a lower confidence than a random right one (0.5 = no signal).

Measured 2026-12-02 on the 800 held-out images here (the fixture's 200 test images + 600 more from the
same generator, seed 1; 34 wrong): AUROC 0.823 (exact path; 0.830 on the int8 fast path). Without the
views, the plain geometric mean of the token probabilities gives 0.732: the model's mistakes (mostly small
circles named squares) are confident ones, the shape token often at probability >= 0.97, and no other
function of one pass's token log-probabilities tried reached 0.75. The views were chosen on 1,500 other
scenes (seed 5: 0.807) and checked on 1,500 more (seed 7: 0.809, 0.690 without views); docs/web.md.
The margin belongs to this fixture: trained with CAPBOT_TEST_LEARNING_SEED=1 or 2, the model's mistakes
move less under the views, and this test fails (seed 1: 0.632 -> 0.663, 49 wrong; seed 2: 0.701 -> 0.772,
43 wrong; on seed 7's 1,500 scenes 0.717 -> 0.730 and 0.655 -> 0.719).
"""

from __future__ import annotations

import pytest

from capbot.app import serving_options
from capbot.settings import get_settings
from inference.captioner import LocalCaptioner
from tests.conftest import TRAINED_TINY_RECIPE
from training.concepts import parse_concepts
from training.data.coco import load_split
from training.data.synthetic import generate_synthetic, load_scenes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

TARGET_AUROC = 0.8


def auroc_of_wrong(confidences: list[float], wrong: list[bool]) -> float:
    """P(confidence of a random wrong caption < that of a random right one), ties counting half."""
    bad = sorted(c for c, w in zip(confidences, wrong) if w)
    good = sorted(c for c, w in zip(confidences, wrong) if not w)
    if not bad or not good:
        raise ValueError("need both right and wrong captions")
    total, below, equal_start = 0.0, 0, 0
    for value in bad:  # count good captions above each bad one, by two pointers over the sorted lists
        while below < len(good) and good[below] <= value:
            below += 1
        while equal_start < len(good) and good[equal_start] < value:
            equal_start += 1
        total += (len(good) - below) + 0.5 * (below - equal_start)
    return total / (len(bad) * len(good))


def test_auroc_helper():
    assert auroc_of_wrong([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 1.0
    assert auroc_of_wrong([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 0.0
    assert auroc_of_wrong([0.5, 0.5], [True, False]) == 0.5
    assert auroc_of_wrong([0.1, 0.6, 0.5, 0.9], [True, True, False, False]) == 0.75


@pytest.fixture(scope="module")
def held_out(trained_tiny_model, tmp_path_factory):
    """(dataset dir, split) pairs the fixture never trained on: its own test split and 600 more scenes."""
    recipe = dict(TRAINED_TINY_RECIPE["data"], n_train=0, n_val=0, n_test=600, seed=1)
    more = generate_synthetic(tmp_path_factory.mktemp("confidence") / "more", **recipe)
    return [(trained_tiny_model.data_dir, "test"), (more.out_dir, "test")]


@pytest.fixture(scope="module")
def scored(trained_tiny_model, held_out):
    """(confidence, wrong) for every held-out image, captioned as `capbot run` does with 4 confidence views."""
    captioner = LocalCaptioner(trained_tiny_model.model_dir, device="cpu", batch_size=64)
    serving = serving_options(get_settings(confidence_views=4))
    confidences, wrong = [], []
    for dataset, split in held_out:
        scenes = load_scenes(dataset, split)
        items = load_split(dataset, split).items
        for first in range(0, len(items), 64):
            batch = items[first:first + 64]
            for image, caption in zip(batch, captioner.caption([i.path.read_bytes() for i in batch], serving)):
                main = scenes[image.image_id].main
                confidences.append(caption.confidence)
                wrong.append(parse_concepts(caption.text) != (main.colour, main.shape))
    return confidences, wrong


def test_confidences_are_probabilities(scored):
    confidences, wrong = scored
    assert len(confidences) == 800 and all(0.0 <= c <= 1.0 for c in confidences)
    assert 0 < sum(wrong) < len(wrong) / 2  # the fixture is mostly right (>= 90% colour and shape)


def test_confidence_separates_wrong_captions_from_right_ones(scored, record_property):
    confidences, wrong = scored
    auroc = auroc_of_wrong(confidences, wrong)
    record_property("auroc", auroc)
    print(f"AUROC of 'caption is wrong' against confidence: {auroc:.3f} ({sum(wrong)} wrong of {len(wrong)})")
    assert auroc >= TARGET_AUROC
