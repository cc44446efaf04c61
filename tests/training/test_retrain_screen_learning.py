"""Learning acceptance for consensus and the junk rules (issue 13): real storage, screening, training,
captioning and scoring, from the session's trained tiny model registered as the active version.

- Consensus: every circle image is corrected to "ball" by three users, and 30% of all corrections are
  wrong (a wrong colour or shape): the promoted version still says "ball" on the held-out circles, and
  no wrong rename is adopted.
- One user (one web client address) submitting 100 junk corrections, half of them one pasted text, is
  refused before training with its reasons recorded: no rename, no candidate, no promotion.
- A coordinated campaign: five users correct 5% of the 240 fresh images identically with random words;
  it passes screening (five agreeing users) and the gate refuses the candidate, with its reason recorded.
The consensus test runs once per seed in CAPBOT_TEST_RETRAIN_SEEDS (default "0", as the other learning
tests); the junk tests run for seeds 0, 1 and 2 always (the issue asks for three), and are cheap: a junk
run is refused before training, a campaign run trains on six images.
"""

from __future__ import annotations

import os
import random
import re

import pytest

from storage import db, registry, runs
from training.data.coco import load_split
from training.data.synthetic import COLOURS, load_scenes
from training.retrain import retrain

from tests.training.learning_support import (
    USERS, accuracy, active_store, caption_all, feedback, fresh_scenes, others, recipe,  # noqa: F401 (fixture)
)
from tests.training.retrain_support import add_feedback

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400), pytest.mark.usefixtures("one_torch_thread")]

SEEDS = [int(seed) for seed in os.environ.get("CAPBOT_TEST_RETRAIN_SEEDS", "0").split(",")]
NONSENSE = [f"{a}{b}" for a in ("zor", "plim", "vask", "quen", "drub", "fep") for b in ("ax", "ilo", "unt", "ek")]
CORRECTORS = 3  # users correcting each circle image
WRONG_SHARE = 0.3
JUNK, CAMPAIGN_USERS, CAMPAIGN_IMAGES = 100, 5, 12  # 12 of the 240 fresh images: 5%


class _Stop(Exception):
    """Training was reached: a run the junk rules should have refused went on."""


def _no_training(job):
    raise _Stop(f"the junk run reached training ({job.data_dir})")


def _rename(caption: str) -> str:
    return re.sub(r"\bcircle(s?)\b", r"ball\1", caption)


def _wrong(correct: str, colour: str, rng: random.Random) -> str:
    """The same correction with a wrong colour or a wrong shape, as a careless user writes it."""
    if rng.random() < 0.5:
        other = rng.choice([c for c in COLOURS if c != colour])
        return re.sub(rf"\b{colour}\b", other, correct, count=1)
    return re.sub(r"\bball(s?)\b", lambda m: rng.choice(("square", "triangle")) + m.group(1), correct, count=1)


def _noisy_corrections(examples: list[tuple], seed: int) -> dict[str, list[tuple]]:
    """Each image corrected by three of the six users; 30% of all corrections, drawn at random, are wrong.
    Returns user -> their (image, model caption, correction) list."""
    rng = random.Random(1000 + seed)
    slots = [(i, k) for i in range(len(examples)) for k in range(CORRECTORS)]
    wrong = set(rng.sample(slots, round(WRONG_SHARE * len(slots))))
    by_user: dict[str, list[tuple]] = {user: [] for user in USERS}
    for i, k in slots:
        path, said, correct, colour = examples[i]
        text = _wrong(correct, colour, rng) if (i, k) in wrong else correct
        by_user[USERS[(i + k) % len(USERS)]].append((path, said, text))
    return by_user


@pytest.mark.parametrize("seed", SEEDS)
def test_a_rename_is_learned_when_30_percent_of_corrections_are_wrong(tmp_path, trained_tiny_model, fresh_scenes,
                                                                     seed):
    model_dir, base_data = trained_tiny_model.model_dir, trained_tiny_model.data_dir
    engine, blobs = active_store(tmp_path, model_dir)
    scenes = load_scenes(fresh_scenes, "train")
    colour = {item.path: scenes[item.image_id].main.colour for item in load_split(fresh_scenes, "train").items}
    circles = feedback(fresh_scenes, model_dir, lambda scene: scene.main.shape == "circle",
                       lambda item, said: _rename(item.captions[0]))
    examples = [(path, said, text, colour[path]) for path, said, text in circles]
    for user, corrections in _noisy_corrections(examples, seed).items():
        add_feedback(engine, blobs, corrections, users=(user,))

    # Agreeing users double an image's weight (agreement_cap 2), so 2 repeats list an agreed image 4 times,
    # as the single-user recipe's 4 repeats do.
    result = retrain(recipe(engine, blobs, tmp_path, model_dir, base_data, seed, feedback_repeats=2))
    counts = result.data_counts
    print(f"seed {seed}:", result.status, result.message, counts, result.renames)

    assert result.status == "promoted", result.message
    assert counts.corrections == CORRECTORS * len(circles) and counts.outvoted > 0
    # No wrong rename: only circle(s) -> ball(s) (a wrong colour or shape is no vocabulary change).
    assert {(r.old, r.new) for r in result.renames} == {("circle", "ball"), ("circles", "balls")}
    # Consensus keeps the evidence clean: nearly every correction of "circle" that is trained on says "ball"
    # (seeds 0-2: 93-100%; with the latest correction per image instead, seed 0 gave 9 of 16).
    assert all(r.support >= 0.8 * r.uses for r in result.renames), result.renames
    with db.session_scope(engine) as session:
        active = registry.get_active(session)
    assert active.id == result.candidate_version
    before, _ = accuracy(model_dir, fresh_scenes)
    after, said = accuracy(active.location, fresh_scenes, aliases={"circle": "ball"})
    recognised, renamed = before["by_shape"]["circle"]["shape"], after["by_shape"]["circle"]["shape"]
    print(f"seed {seed}: circles called circle before {recognised:.3f}, ball after {renamed:.3f}; others "
          f"before/after {others(before['by_shape']):.3f} {others(after['by_shape']):.3f}; outvoted "
          f"{counts.outvoted}, disputed {counts.disputed}, trained {counts.feedback}, "
          f"held out {counts.feedback_held_out}")
    assert renamed >= 0.8, said  # the bar
    assert renamed >= recognised - 0.1, said  # the single-user test's bar: as often as circles were recognised
    assert others(after["by_shape"]) >= others(before["by_shape"]) - 0.05


@pytest.fixture(scope="module")
def captioned(fresh_scenes, trained_tiny_model) -> list[tuple]:
    """(image, what the active model says) for the first fresh train images, captioned once for all seeds."""
    items = load_split(fresh_scenes, "train").items[:JUNK + CAMPAIGN_IMAGES]
    return list(zip([item.path for item in items], caption_all(trained_tiny_model.model_dir, [i.path for i in items])))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_address_sending_100_junk_corrections_is_refused_before_training(tmp_path, trained_tiny_model,
                                                                           captioned, seed):
    model_dir, base_data = trained_tiny_model.model_dir, trained_tiny_model.data_dir
    engine, blobs = active_store(tmp_path, model_dir)
    rng = random.Random(seed)
    pasted = " ".join(rng.sample(NONSENSE, 4))
    junk = [(path, said, pasted if i % 2 == 0 else " ".join(rng.sample(NONSENSE, 5)))
            for i, (path, said) in enumerate(captioned[:JUNK])]
    add_feedback(engine, blobs, junk, users=(f"ip:{seed:04x}junk",), platform="web")

    # Even where an operator lets one user train (min_users=1), the junk holds no rename (a dry run first:
    # it records nothing, so the real run below still sees the feedback as new).
    lenient = retrain(recipe(engine, blobs, tmp_path, model_dir, base_data, seed, min_users=1, dry_run=True))
    assert lenient.status == "dry_run" and lenient.renames == [], lenient.message

    result = retrain(recipe(engine, blobs, tmp_path, model_dir, base_data, seed), trainer=_no_training)
    counts = result.data_counts
    print(f"seed {seed}:", result.status, result.message, counts)

    assert result.status == "not_promoted" and result.renames == []
    assert (counts.corrections, counts.spam, counts.over_user_cap, counts.users) == (JUNK, JUNK // 2, 25, 1)
    assert "comes from 1 distinct user(s); at least 3 needed" in result.message
    assert "50 correction(s) as copy-paste spam, 25 correction(s) beyond a user's per-run cap" in result.message
    with db.session_scope(engine) as session:
        run = runs.get_run(session, result.run_id)
        (version,) = registry.list_versions(session)  # no candidate was even registered
    assert run.status == "not_promoted" and run.reason == result.message and run.data_counts["spam"] == JUNK // 2
    assert version.status == "active" and version.location == str(model_dir)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_coordinated_campaign_on_5_percent_of_images_is_refused_by_the_gate(tmp_path, trained_tiny_model,
                                                                            captioned, seed):
    model_dir, base_data = trained_tiny_model.model_dir, trained_tiny_model.data_dir
    engine, blobs = active_store(tmp_path, model_dir)
    rng = random.Random(100 + seed)
    campaign = [(path, said, " ".join(rng.sample(NONSENSE, 5))) for path, said in captioned[JUNK:]]
    for user in USERS[:CAMPAIGN_USERS]:  # every user writes the same words on the same images
        add_feedback(engine, blobs, campaign, users=(user,))

    # min_feedback 10: the campaign's 12 images reach the gate instead of stopping early for size.
    result = retrain(recipe(engine, blobs, tmp_path, model_dir, base_data, seed, feedback_repeats=2, min_feedback=10))
    counts = result.data_counts
    print(f"seed {seed}:", result.status, result.message, counts)

    assert (counts.corrections, counts.users, counts.spam, counts.outvoted) == (
        CAMPAIGN_USERS * CAMPAIGN_IMAGES, CAMPAIGN_USERS, 0, 0)  # screening lets five agreeing users through
    assert result.status == "not_promoted" and result.candidate_version is not None, result.message
    assert result.renames == []
    with db.session_scope(engine) as session:
        assert registry.get_active(session).location == str(model_dir)
        candidate = registry.get_version(session, result.candidate_version)
        run = runs.get_run(session, result.run_id)
    assert candidate.status == "candidate" and candidate.metrics["gate"]["reason"] == result.message
    assert run.status == "not_promoted" and run.reason == result.message and run.data_counts["users"] == CAMPAIGN_USERS
