"""Learning test for the review queue: corrections taken from the top of `capbot feedback queue` against the
same number of corrections of random images, from the shared trained fixture.

A pool of fresh synthetic images (the fixture's shapes, never seen in training) is captioned by the active
model with the serving options and stored as the bots store captions (image blob, caption, confidence). A
random fifth of the pool and of the held-out images have a warm colour cast, as pictures taken under other
light than the training data's: the fixture names colour and shape on about half of those and on 95% of the
rest. A reviewer then corrects K images with a ground-truth caption: the top K of the review queue, or K
images drawn at random (same K, same seed). Each set of corrections is retrained on once (real export, mix,
fine-tune, scoring and gate), and the candidate it produced names colour and shape on a held-out test split
from the same generator.

In `make test`: the queue surfaces the model's mistakes, and the corrections it leads to make a model the
gate promotes and that does better than the active one. On request (CAPBOT_TEST_QUEUE_CAMPAIGN=1, 13 minutes or
more): over 20 pools, they improve the model more than as many random corrections, which one pool cannot
show. CAPBOT_TEST_QUEUE_SEEDS (default "0", e.g. "0,1,2") runs the single-pool test per retrain seed.

Knobs for measuring other pools (docs/retraining.md, "Does it pay?", has what they gave; the assertions are
about the default pool): CAPBOT_TEST_QUEUE_POOL_SEED (default 41) draws another pool and test split,
CAPBOT_TEST_QUEUE_CAST_SHARE (default 0.2) is the share with the colour cast (0: every picture like the
training data, where no correction teaches more than another), CAPBOT_TEST_QUEUE_TURN (degrees, default 0)
turns every pool and held-out image (CAPBOT_TEST_QUEUE_TURN_SHARE, default 1, turns only that share of them,
drawn at random), and CAPBOT_TEST_QUEUE_VIEWS (default 0, the CPU's serving default) scores the pool's
confidence on that many moved views (4 is the GPU's default).
"""

from __future__ import annotations

import multiprocessing
import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

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

from tests.specs import EXACT_GREEDY
from tests.training.retrain_support import config_for, open_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400), pytest.mark.usefixtures("one_torch_thread")]

SEEDS = [int(seed) for seed in os.environ.get("CAPBOT_TEST_QUEUE_SEEDS", "0").split(",")]
POOL_SEED = int(os.environ.get("CAPBOT_TEST_QUEUE_POOL_SEED", "41"))
TURN = float(os.environ.get("CAPBOT_TEST_QUEUE_TURN", "0"))
TURN_SHARE = float(os.environ.get("CAPBOT_TEST_QUEUE_TURN_SHARE", "1"))
CAST_SHARE = float(os.environ.get("CAPBOT_TEST_QUEUE_CAST_SHARE", "0.2"))
CAST = (1.3, 1.0, 1 / 1.3)  # warm light: red up, blue down (per-channel factors)
VIEWS = int(os.environ.get("CAPBOT_TEST_QUEUE_VIEWS", "0"))
POOL = 1000  # captioned images waiting for a look
K = 50  # corrections a reviewer makes: the review budget
N_TEST = 500
MIN_GAIN = 0.01  # held-out colour+shape accuracy, queue-driven over random, averaged over the campaign's pools
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
    return _build_pool(tmp_path_factory.mktemp("queue_pool"), trained_tiny_model, POOL_SEED)


def _build_pool(out: Path, trained_tiny_model, pool_seed: int) -> Pool:
    """Generate the pool and its test split under `out` (seeded by `pool_seed`) and caption the pool."""
    shapes = sorted({scene.main.shape for scene in load_scenes(trained_tiny_model.data_dir, "train").values()})
    generate_synthetic(out, n_train=POOL, n_val=4, n_test=N_TEST, seed=pool_seed, image_size=64, shapes=shapes)
    if TURN:
        _turn_images(out, TURN, TURN_SHARE, pool_seed)
    if CAST_SHARE:
        _cast_images(out, CAST_SHARE, pool_seed)
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
    _change_images(dataset, share, seed, lambda rgb: rgb.rotate(degrees, resample=Image.Resampling.BILINEAR,
                                                                fillcolor=rgb.getpixel((0, 0))))


def _cast_images(dataset: Path, share: float, seed: int) -> None:
    """Give a random `share` of the pool's and the test split's images a warm colour cast (`CAST`), in place:
    pictures taken under other light than the training data's."""
    def cast(rgb: Image.Image) -> Image.Image:
        bands = rgb.split()
        return Image.merge("RGB", [band.point(lambda v, f=f: min(255, round(v * f))) for band, f in zip(bands, CAST)])

    _change_images(dataset, share, seed, cast)


def _change_images(dataset: Path, share: float, seed: int, change: Callable[[Image.Image], Image.Image]) -> None:
    """Apply `change` in place to a random `share` (drawn with `seed`) of the train and test split's images."""
    chance = random.Random(seed)
    for split in ("train", "test"):
        for item in load_split(dataset, split).items:
            if chance.random() >= share:
                continue
            with Image.open(item.path) as image:
                rgb = image.convert("RGB")
            change(rgb).save(item.path)


def _caption(model, images, options=None):
    captioner = LocalCaptioner(str(model), EXACT_GREEDY)
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
    # The model's mistakes are recognition (colours under the cast, small shapes), so the encoder trains too;
    # a low learning rate keeps the fine-tune from costing more than it teaches. The queue's picks are nearly
    # all cast pictures: as half of the mix they cost the other pictures what they taught (docs/retraining.md,
    # "Does it pay?"), so corrections are a tenth of it, each still seen four times per epoch.
    return config_for(engine, blobs, root, model_dir, base_data, min_feedback=1, held_out_fraction=0.2,
                      min_held_out=4, feedback_fraction=0.1, feedback_repeats=4, freeze_encoder=False, epochs=5,
                      learning_rate=3e-5, batch_size=16, cider_tolerance=0.05, base_eval_limit=40, seed=seed)


def _accuracy(model_location, dataset: Path) -> float:
    test = load_split(dataset, "test")
    said = _caption(model_location, [item.path.read_bytes() for item in test.items])
    predictions = {item.image_id: caption.text for item, caption in zip(test.items, said)}
    return concept_accuracy(predictions, load_scenes(dataset, "test"))["both"]


def _retrained_accuracy(strategy, tmp_path, trained_tiny_model, pool, seed) -> tuple[float, int, str]:
    """(held-out accuracy of the candidate, wrong captions among the chosen, the run's status)."""
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
        return _accuracy(candidate.location, pool.dataset), wrong, str(result.status)
    finally:
        engine.dispose()


def test_the_queue_surfaces_the_models_mistakes(tmp_path, trained_tiny_model, pool):
    """Measured 2026-12-03 (pool seed 41, a fifth colour-cast, the CPU's serving options): 137 of 1000
    captions wrong (colour or shape); the queue's top 50 held 43, against 6.8 expected from 50 random images
    (6.3x). With no cast (CAPBOT_TEST_QUEUE_CAST_SHARE=0) 43 of 1000 were wrong and the top 50 held 6-14,
    depending on the machine the fixture trained on: the model's mistakes on pictures like its training data
    are mostly confident ones."""
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


# Retrained with corrections a tenth of the mix, the queue's picks make a model the gate promotes and that
# names colour and shape on more held-out pictures than the active one. Measured 2026-12-03 (pool seed 41,
# retrain seed 0): active 0.848, after the queue's 50 corrections (43 of wrong captions) 0.888, promoted, on a
# fixture trained on an Intel Xeon with AMX; 0.872 -> 0.876, promoted, on one trained with torch limited to
# AVX2. Over 20 pools (the campaign below) the gain was -0.4 to +5.6 points, above zero on 19; with
# corrections half of the mix instead, 12 of 20 candidates scored below the active model and 14 were refused.
@pytest.mark.parametrize("seed", SEEDS)
def test_queue_driven_corrections_improve_the_model(tmp_path, trained_tiny_model, pool, seed):
    after, wrong, status = _retrained_accuracy("queue", tmp_path, trained_tiny_model, pool, seed)
    before = _accuracy(trained_tiny_model.model_dir, pool.dataset)
    print(f"seed {seed}: colour+shape on {N_TEST} held-out images: active {before:.3f}, after the queue's "
          f"corrections {after:.3f} ({wrong} wrong captions corrected), {status}")
    assert status == "promoted"
    assert after > before


CAMPAIGN = os.environ.get("CAPBOT_TEST_QUEUE_CAMPAIGN") == "1"
CAMPAIGN_POOLS = range(181, 221, 2)  # fixed before the first campaign ran (docs/retraining.md, "Does it pay?")


# The claim: corrections from the top of the queue improve the model more than the same number of
# random corrections. One pool cannot show it: one retrain's result swings by 1-2 points from pool to pool
# (on pool 41 the queue led by 2.2 points on one fixture and tied on another), so the claim is measured over
# 20 pools, and asserted as it was written down before the first run: the queue ahead by a point on average
# and on at least 14 of 20. Run 2026-12-03 (fixture trained on an Intel Xeon with AMX): ahead on 19 of 20,
# +1.9 points on average (-1.2 to +4.0); queue 0.885, random 0.866, active 0.852 (the script that measured it
# first, with the cast rounded slightly differently: 17 of 20, +1.7). It took 13 minutes on 2 cores there
# (about twice that expected without AVX-512), too long for `make test`, so it runs on request:
#   CAPBOT_TEST_QUEUE_CAMPAIGN=1 pytest -m slow -rP tests/training/test_queue_learning.py
@pytest.mark.skipif(not CAMPAIGN, reason="a 20-pool campaign (13-30 min); set CAPBOT_TEST_QUEUE_CAMPAIGN=1")
@pytest.mark.timeout(3 * 3600)
def test_queue_driven_corrections_beat_random_ones_over_20_pools(tmp_path, trained_tiny_model):
    jobs = [(trained_tiny_model, tmp_path / f"pool{p}", p) for p in CAMPAIGN_POOLS]
    workers = max(1, len(os.sched_getaffinity(0)))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pools:
        results = list(pools.map(_compare_on_pool, *zip(*jobs)))
    gains = [queue - rand for _pool_seed, _before, queue, rand in results]
    for (pool_seed, before, queue, rand), gain in zip(results, gains):
        print(f"pool {pool_seed}: active {before:.3f}, queue-driven {queue:.3f}, random {rand:.3f} ({gain:+.3f})")
    mean = sum(gains) / len(gains)
    ahead = sum(gain > 0 for gain in gains)
    print(f"queue minus random over {len(gains)} pools: {mean:+.4f} on average, ahead on {ahead}")
    assert mean >= MIN_GAIN and ahead >= 14


def _compare_on_pool(trained_tiny_model, root: Path, pool_seed: int) -> tuple[int, float, float, float]:
    """(pool seed, active, queue-driven, random) held-out accuracy on one pool, retrain seed 0; in a worker."""
    import torch

    torch.set_num_threads(1)
    root.mkdir(parents=True)
    pool = _build_pool(root / "pool", trained_tiny_model, pool_seed)
    queue, _wrong, _status = _retrained_accuracy("queue", root, trained_tiny_model, pool, 0)
    rand, _wrong, _status = _retrained_accuracy("random", root, trained_tiny_model, pool, 0)
    return pool_seed, _accuracy(trained_tiny_model.model_dir, pool.dataset), queue, rand
