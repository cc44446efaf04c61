"""Learning test for the review queue: corrections taken from the top of `capbot feedback queue` against the
same number of corrections of random images, from the shared trained fixture.

A pool of fresh synthetic images (the fixture's shapes, never seen in training) is captioned by the active
model with the serving options and stored as the bots store captions (image blob, caption, confidence). A
reviewer then corrects K images with a ground-truth caption: the top K of the review queue, or K images
drawn at random (same K, same seed). Each set of corrections is retrained on once (real export, mix,
fine-tune, scoring and gate), and the candidate it produced names colour and shape on a held-out test split
from the same generator.

The queue does surface the model's mistakes (asserted); that the corrections it leads to improve the model
more than random ones does not hold with this fixture and one retrain (an expected failure, with the
numbers). CAPBOT_TEST_QUEUE_SEEDS (default "0", e.g. "0,1,2") runs the comparison per retrain seed.

Knobs for measuring other pools (docs/retraining.md, "Does it pay?", has what they gave; the assertions are
about the default pool): CAPBOT_TEST_QUEUE_POOL_SEED (default 41) draws another pool and test split,
CAPBOT_TEST_QUEUE_TURN (degrees, default 0) turns every pool and held-out image, as pictures unlike the
training data (CAPBOT_TEST_QUEUE_TURN_SHARE, default 1, turns only that share of them, drawn at random),
and CAPBOT_TEST_QUEUE_VIEWS (default 0, the CPU's serving default) scores the pool's confidence on that
many moved views (4 is the GPU's default).
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
from PIL import Image

from bots.core import Origin
from bots.store import SqlBotStore
from inference.captioner import LocalCaptioner
from inference.modeldir import load_metadata
from inference.types import GenerationOptions
from storage import db, registry
from storage.captions import record_caption
from storage.images import store_image
from storage.queue import review_queue
from training.concepts import concept_accuracy, parse_concepts
from training.data.coco import load_split
from training.data.synthetic import generate_synthetic, load_scenes
from training.retrain import retrain

from tests.training.retrain_support import config_for, open_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400), pytest.mark.usefixtures("one_torch_thread")]

SEEDS = [int(seed) for seed in os.environ.get("CAPBOT_TEST_QUEUE_SEEDS", "0").split(",")]
POOL_SEED = int(os.environ.get("CAPBOT_TEST_QUEUE_POOL_SEED", "41"))
TURN = float(os.environ.get("CAPBOT_TEST_QUEUE_TURN", "0"))
TURN_SHARE = float(os.environ.get("CAPBOT_TEST_QUEUE_TURN_SHARE", "1"))
VIEWS = int(os.environ.get("CAPBOT_TEST_QUEUE_VIEWS", "0"))
POOL = 1000  # captioned images waiting for a look
K = 50  # corrections a reviewer makes: the review budget
N_TEST = 500
MIN_GAIN = 0.01  # held-out colour+shape accuracy, queue-driven over random (see the expected failure below)
SERVING = GenerationOptions(num_beams=3, num_alternatives=2, confidence_views=VIEWS)  # the bots' CPU default
POSTER = Origin(platform="slack", workspace="T1", channel="C1", user="poster")
REVIEWERS = tuple(Origin(platform="slack", workspace="T1", channel="C1", user=f"reviewer{n}") for n in range(3))


@dataclass(frozen=True)
class Pool:
    """The captioned pool and the held-out test split (same generator, disjoint images)."""

    dataset: Path
    captions: dict[str, tuple[bytes, object, list[str], bool]]  # path -> (bytes, Caption, references, wrong)


@pytest.fixture(scope="module")
def pool(tmp_path_factory, trained_tiny_model) -> Pool:
    shapes = sorted({scene.main.shape for scene in load_scenes(trained_tiny_model.data_dir, "train").values()})
    out = tmp_path_factory.mktemp("queue_pool")
    generate_synthetic(out, n_train=POOL, n_val=4, n_test=N_TEST, seed=POOL_SEED, image_size=64, shapes=shapes)
    if TURN:
        _turn_images(out, TURN, TURN_SHARE, POOL_SEED)
    items, scenes = load_split(out, "train").items, load_scenes(out, "train")
    data = [item.path.read_bytes() for item in items]
    said = _caption(trained_tiny_model.model_dir, data, SERVING)
    captions = {}
    for item, image, caption in zip(items, data, said):
        colour, shape = parse_concepts(caption.text)
        main = scenes[item.image_id].main
        captions[str(item.path)] = (image, caption, list(item.captions), (colour, shape) != (main.colour, main.shape))
    return Pool(out, captions)


def _turn_images(dataset: Path, degrees: float, share: float, seed: int) -> None:
    """Turn a random `share` of the pool's and the test split's images in place, the corners filled with the
    corner's colour."""
    chance = random.Random(seed)
    for split in ("train", "test"):
        for item in load_split(dataset, split).items:
            if chance.random() >= share:
                continue
            with Image.open(item.path) as image:
                rgb = image.convert("RGB")
            rgb.rotate(degrees, resample=Image.Resampling.BILINEAR, fillcolor=rgb.getpixel((0, 0))).save(item.path)


def _caption(model, images, options=None):
    captioner = LocalCaptioner(str(model), device="cpu")
    try:
        return captioner.caption(images, options)
    finally:
        captioner.close()


def _captioned_store(root: Path, model_dir: Path, pool: Pool):
    """A database with the fixture active and every pool image captioned as the bots store it."""
    engine, blobs = open_store(f"sqlite:///{root / 'capbot.db'}", root)
    with db.session_scope(engine) as session:
        version = load_metadata(model_dir).version
        registry.register_version(session, version_id=version, location=str(model_dir))
        registry.promote(session, version)
    caption_ids = {}
    with db.session_scope(engine) as session:  # one transaction: the bots' SqlBotStore takes one per image
        for path, (image, caption, _references, _wrong) in pool.captions.items():
            stored = store_image(session, blobs, image, format="png", width=64, height=64, platform="slack",
                                 workspace_id=POSTER.workspace, channel_id=POSTER.channel)
            record = record_caption(session, image_sha256=stored.sha256, text=caption.text,
                                    model_version=caption.model_version, platform="slack",
                                    options=asdict(SERVING), confidence=caption.confidence,
                                    alternatives=caption.alternatives, workspace_id=POSTER.workspace,
                                    channel_id=POSTER.channel, user_id=POSTER.user)
            caption_ids[record.id] = path
    return engine, blobs, SqlBotStore(engine, blobs), caption_ids


def _chosen(strategy: str, engine, blobs, caption_ids: dict[int, str], seed: int) -> list[int]:
    if strategy == "queue":
        with db.session_scope(engine) as session:
            return [item.caption_id for item in review_queue(session, blobs, limit=K)]
    return random.Random(seed).sample(sorted(caption_ids), K)


def _correct(store: SqlBotStore, chosen: list[int], caption_ids: dict[int, str], pool: Pool) -> int:
    """The reviewer types a true caption for each chosen image (the generator's references, in order; a
    reference equal to the model's caption is refused as nothing to correct). Returns corrections stored."""
    stored = 0
    for n, caption_id in enumerate(chosen):
        for reference in pool.captions[caption_ids[caption_id]][2]:
            if store.add_correction(caption_id, REVIEWERS[n % len(REVIEWERS)], reference).accepted:
                stored += 1
                break
    return stored


def _config(engine, blobs, root, model_dir, base_data, seed):
    # The model's mistakes are recognition (small circles and squares confused), so the encoder trains too;
    # a low learning rate keeps the fine-tune from costing more than it teaches.
    return config_for(engine, blobs, root, model_dir, base_data, min_feedback=1, held_out_fraction=0.2,
                      min_held_out=4, feedback_fraction=0.5, feedback_repeats=4, freeze_encoder=False, epochs=5,
                      learning_rate=3e-5, batch_size=16, cider_tolerance=0.05, base_eval_limit=40, seed=seed)


def _accuracy(model_location, dataset: Path) -> float:
    test = load_split(dataset, "test")
    said = _caption(model_location, [item.path.read_bytes() for item in test.items])
    predictions = {item.image_id: caption.text for item, caption in zip(test.items, said)}
    return concept_accuracy(predictions, load_scenes(dataset, "test"))["both"]


def _retrained_accuracy(strategy, tmp_path, trained_tiny_model, pool, seed) -> tuple[float, int, int]:
    """(held-out accuracy of the candidate, wrong captions among the chosen, corrections stored)."""
    root = tmp_path / strategy
    root.mkdir()
    engine, blobs, store, caption_ids = _captioned_store(root, trained_tiny_model.model_dir, pool)
    try:
        chosen = _chosen(strategy, engine, blobs, caption_ids, seed)
        wrong = sum(pool.captions[caption_ids[c]][3] for c in chosen)
        stored = _correct(store, chosen, caption_ids, pool)
        result = retrain(_config(engine, blobs, root, trained_tiny_model.model_dir, trained_tiny_model.data_dir,
                                 seed))
        with db.session_scope(engine) as session:
            candidate = registry.get_version(session, result.candidate_version)
        print(f"seed {seed} {strategy}: {wrong}/{K} chosen captions wrong, {stored} corrections, "
              f"{result.status} ({result.message})")
        return _accuracy(candidate.location, pool.dataset), wrong, stored
    finally:
        engine.dispose()


def test_the_queue_surfaces_the_models_mistakes(tmp_path, trained_tiny_model, pool):
    """Re-measured 2026-12-02 (pool seed 41, the CPU's serving options): 43 of 1000 captions wrong (colour or
    shape); the queue's top 50 held 14, against 2.1 expected from 50 random images (6.7x; the first
    measurement, with an earlier confidence formula, gave 6). Confidence separates right from wrong only
    partly (AUROC 0.76 from one pass, tests/inference/test_confidence_learning.py), so the top of the queue
    is enriched, not pure."""
    engine, blobs, _store, caption_ids = _captioned_store(tmp_path, trained_tiny_model.model_dir, pool)
    try:
        wrong_overall = sum(entry[3] for entry in pool.captions.values())
        queue = _chosen("queue", engine, blobs, caption_ids, 0)
        wrong_in_queue = sum(pool.captions[caption_ids[c]][3] for c in queue)
    finally:
        engine.dispose()
    expected_at_random = wrong_overall * K / POOL
    print(f"wrong captions: {wrong_overall}/{POOL} in the pool; {wrong_in_queue}/{K} at the top of the queue "
          f"(random: {expected_at_random:.1f} expected)")
    assert wrong_in_queue >= 2 * expected_at_random


# The issue asks for corrections from the top of the queue to improve the model more than random ones. A
# "more" worth the name must beat the seed-to-seed noise of one retrain (about +-0.5 points, 2-3 of 500
# images), so the assertion asks for one point. Re-measured 2026-12-02 with the recipe in `_config` (active
# model 0.952 on the 500 held-out images; the queue's top 50 held 14 wrong captions, 50 random images 1-2):
#   retrain seed 0: queue-driven 0.952, random 0.958;  seed 1: 0.954 / 0.964;  seed 2: 0.952 / 0.952.
# Why it does not hold (numbers in docs/retraining.md, "Does it pay?"):
# - Even an oracle that corrects 50 *wrong* captions does no better than 50 random corrections: one small
#   fine-tune does not turn a few corrected mistakes into better recognition on new images, and the gain
#   retrains show over the active model comes from the base data mixed in.
# - A pool with something new (20% stars, a shape the fixture never saw, all captioned wrong) does not help:
#   confidence on stars is as high as on the known shapes, with or without views, so the queue finds them
#   no more often than random images, and neither retrain learned "star".
# - Nor do pictures unlike the training data (CAPBOT_TEST_QUEUE_TURN=45, CAPBOT_TEST_QUEUE_VIEWS=4; 58-60%
#   right). There corrections of wrong captions do teach (an oracle's beat random ones), and queue-driven
#   ones beat random ones on this pool (+1.0 to +4.8 points, seeds 0-3) but lost on another
#   (CAPBOT_TEST_QUEUE_POOL_SEED=43: -2.8, -2.0, +0.8), because the commonest mistake there (diamonds
#   called circles) is a confident one the queue ranks low.
# - Nor a fifth of them turned (CAPBOT_TEST_QUEUE_TURN_SHARE=0.2; 86-89% right): over eight pools at seed 0
#   the queue led by 0.6 points on average, by a point or more on 4 of 8, and this pool lost (-0.2).
# - Nor, all turned with 4 views, on 20 fresh pools fixed before they ran (2026-12-03, another machine's
#   fixture): -0.3 points on average, ahead on 9 of 20; nor a draw weighted by the queue score instead of
#   its top 50 (+0.6 on average over 6 pools, ahead on 3). Nor with a fifth of the pictures colour-cast,
#   where the queue's top 50 held 42 mistakes on average against 7 at random (one pass, 20 fresh pools):
#   -1.1 points on average, ahead on 5 of 20. Finding the mistakes is not what is missing.
# Recorded as an expected failure (strict: the day it holds, e.g. with a sharper confidence, this test fails
# and the marker must go).
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="one retrain on 50 corrections gains no more from the queue's top than from random "
                          "images (see the comment above)")
@pytest.mark.parametrize("seed", SEEDS)
def test_queue_driven_corrections_beat_random_ones(tmp_path, trained_tiny_model, pool, seed):
    queue, queue_wrong, _ = _retrained_accuracy("queue", tmp_path, trained_tiny_model, pool, seed)
    rand, random_wrong, _ = _retrained_accuracy("random", tmp_path, trained_tiny_model, pool, seed)
    before = _accuracy(trained_tiny_model.model_dir, pool.dataset)
    print(f"seed {seed}: colour+shape on {N_TEST} held-out images: active {before:.3f}, after queue-driven "
          f"corrections {queue:.3f} ({queue_wrong} wrong captions corrected), after random ones {rand:.3f} "
          f"({random_wrong})")
    assert queue >= rand + MIN_GAIN
