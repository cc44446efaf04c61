"""Learning test: does a caption's confidence separate right captions from wrong ones?

The trained tiny fixture captions held-out synthetic scenes through the product's `LocalCaptioner` with the
serving options (`capbot.captioning.captioner_spec`: 3 beams, 2 alternatives), scoring confidence the way serving
does on a GPU, where CAPBOT_CONFIDENCE_VIEWS left unset means 4 views (`inference.views.views_for`): the
image and 4 views of it moved by two pixels. A caption is wrong when it does not name the main object's
colour and shape (`training.concepts`). The AUROC of "caption is wrong" against confidence is the chance
that a random wrong caption gets a lower confidence than a random right one (0.5 = no signal).

The CPU's default (no views: a full-size caption on the CPU fast path is 3-4x faster without them) is
measured too and must do worse, or the views would not be worth their cost.

Measured 2026-12-02 on the 800 held-out images here (the fixture's 200 test images + 600 more from the
same generator, seed 1), Intel Xeon with AMX: 32 wrong; 0.760 from one pass, 0.820 with the views pooled by
their mean, 0.817 by the cautious probability `inference.confidence` uses (mean less a standard deviation),
which holds better on other sets and fixtures: 0.796-0.821 on other scenes for the recipe trained at seeds
0, 1 and 2, against 0.688-0.820 for the mean. CAPBOT_TEST_LEARNING_SEED=1 or 2 runs this test on those
fixtures: seed 2 passes (0.829), seed 1 does not (0.704; docs/web.md). The
model's mistakes (mostly circles named squares, large ones too) are confident ones, the shape token often at
probability >= 0.97: no function of one pass's token log-probabilities tried reached 0.8, nor did training
the fixture on 8x the images, with random shifts or with 8-pixel patches (docs/web.md).
"""

from __future__ import annotations

import pytest

from dataclasses import replace

from capbot.captioning import captioner_spec
from capbot.settings import get_settings
from inference.captioner import LocalCaptioner
from tests.specs import exact_greedy
from tests.trained_fixture import LEARNING_SEED, TRAINED_TINY_RECIPE
from inference.views import views_for
from training.concepts import parse_concepts
from training.data.coco import load_split
from training.data.synthetic import generate_synthetic, load_scenes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

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
    """(dataset dir, split) pairs the fixture never trained on: its own test split and 600 more scenes, from
    the next seed (another seed's test split would repeat the fixture's own test images)."""
    recipe = dict(TRAINED_TINY_RECIPE["data"], n_train=0, n_val=0, n_test=600, seed=LEARNING_SEED + 1)
    more = generate_synthetic(tmp_path_factory.mktemp("confidence") / "more", **recipe)
    return [(trained_tiny_model.data_dir, "test"), (more.out_dir, "test")]


@pytest.fixture(scope="module")
def scored(trained_tiny_model, held_out):
    """{views: (confidences, wrong)} for every held-out image, captioned as `capbot run` does, with the
    GPU's default views and with the CPU's (none)."""
    captioner = LocalCaptioner(trained_tiny_model.model_dir, exact_greedy(batch_size=64))
    serving = captioner_spec(get_settings()).options
    return {views: _score(captioner, replace(serving, confidence_views=views), held_out)
            for views in (views_for(None, "cuda"), views_for(None, "cpu"))}


def _score(captioner, options, held_out) -> tuple[list[float], list[bool]]:
    confidences, wrong = [], []
    for dataset, split in held_out:
        scenes = load_scenes(dataset, split)
        items = load_split(dataset, split).items
        for first in range(0, len(items), 64):
            batch = items[first:first + 64]
            for image, caption in zip(batch, captioner.caption([i.path.read_bytes() for i in batch], options)):
                main = scenes[image.image_id].main
                confidences.append(caption.confidence)
                wrong.append(parse_concepts(caption.text) != (main.colour, main.shape))
    return confidences, wrong


def test_confidences_are_probabilities(scored):
    for confidences, wrong in scored.values():
        assert len(confidences) == 800 and all(0.0 <= c <= 1.0 for c in confidences)
        assert 0 < sum(wrong) < len(wrong) / 2  # the fixture is mostly right (>= 90% colour and shape)
    (_, wrong_with_views), (_, wrong_alone) = scored.values()
    assert wrong_with_views == wrong_alone  # the views change the confidence, never the caption


def test_confidence_separates_wrong_captions_from_right_ones(scored, record_property):
    aurocs = {views: auroc_of_wrong(*scored[views]) for views in scored}
    with_views, single = aurocs[views_for(None, "cuda")], aurocs[views_for(None, "cpu")]
    record_property("auroc", with_views)
    record_property("auroc_single_pass", single)
    wrong = sum(next(iter(scored.values()))[1])
    print(f"AUROC of 'caption is wrong' against confidence ({wrong} wrong of 800): {with_views:.3f} with "
          f"{views_for(None, 'cuda')} views (the GPU default), {single:.3f} from the image alone (the CPU default)")
    assert with_views >= TARGET_AUROC
    assert with_views > single
