"""Learning acceptance for the loop: users rename a concept and the promoted version learns it, three rounds in
a row without forgetting the earlier renames, and a rollback undoes the last round; users type random words and
the gate keeps the candidate out. Real storage, training, captioning and scoring.

Starts from the session's `trained_tiny_model` (the tiny preset trained on synthetic shapes), registered
and promoted as the active version, as an operator would after `capbot train`.

Each test runs once per seed in CAPBOT_TEST_RETRAIN_SEEDS (default "0"; e.g. "0,1,2" checks that the
assertions hold across seeds while the session fixture is trained only once). The seed drives the base
subset, the fine-tune and the random words; a seed gives the same run each time on one machine.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import re
from dataclasses import dataclass
from typing import Callable

import pytest

from capbot.cli import main
from inference.modeldir import load_metadata
from storage import db, registry, runs
from training.retrain import retrain

from tests.training.learning_support import (
    USERS, accuracy, active_store, feedback, fresh_scenes, recipe,  # noqa: F401 (fresh_scenes: a fixture)
)
from tests.training.retrain_support import add_feedback

# Whichever learning module runs first trains the shared `trained_tiny_model` (~5 min on 2 idle cores).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400), pytest.mark.usefixtures("one_torch_thread")]

SEEDS = [int(seed) for seed in os.environ.get("CAPBOT_TEST_RETRAIN_SEEDS", "0").split(",")]
NONSENSE = [f"{a}{b}" for a in ("zor", "plim", "vask", "quen", "drub", "fep") for b in ("ax", "ilo", "unt", "ek")]


def _random_words(seed: int):
    rng = random.Random(seed)
    return lambda item, said: " ".join(rng.sample(NONSENSE, 5))


def _both(accuracy_by_shape: dict, shapes) -> float:
    """Colour+shape accuracy over the images of `shapes`."""
    rows = [v for k, v in accuracy_by_shape.items() if k in shapes]
    return sum(v["both"] * v["n"] for v in rows) / sum(v["n"] for v in rows)


# --- Several rounds (issue 13): each round its own rename, none forgotten, and a rollback undoes the last ---
# The fixture knows circles, squares and triangles (no stars), so the rounds rename circle -> ball, square ->
# box, triangle -> wedge (the third example was star -> sparkle). Users write the names adopted so far.
ROUNDS = (("circle", "ball"), ("square", "box"), ("triangle", "wedge"))


@dataclass(frozen=True)
class Round:
    """One retraining round: its rename, the run's result, and the promoted version on the held-out images."""

    old: str
    new: str
    result: object  # training.retrain.RetrainResult
    version: registry.ModelVersionInfo  # the active version after the run
    accuracy: dict  # concept_accuracy with every rename adopted so far
    captions: dict[int, str]


@dataclass(frozen=True)
class Rounds:
    seed: int
    before: dict  # the fixture's concept_accuracy (old names)
    rounds: list[Round]
    rolled_back_to: registry.ModelVersionInfo
    rollback_output: str  # what `capbot models rollback` printed
    captions_after_rollback: dict[int, str]


def _renamer_for(pairs) -> Callable[[str], str]:
    """What users write once they call each `old` shape `new` (singular and plural)."""
    plurals = {"box": "boxes"}
    swaps = [(re.compile(rf"\b{old}(s?)\b"), new, plurals.get(new, new + "s")) for old, new in pairs]

    def rename(text: str) -> str:
        for pattern, new, plural in swaps:
            text = pattern.sub(lambda m, new=new, plural=plural: plural if m.group(1) else new, text)
        return text

    return rename


def _rollback_as_the_cli_does(database_url: str, data_dir) -> str:
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setenv("CAPBOT_DATABASE_URL", database_url)
        patch.setenv("CAPBOT_DATA_DIR", str(data_dir))
        assert main(["models", "rollback"]) == 0
    return out.getvalue()


@pytest.fixture(scope="module", params=SEEDS, ids=lambda seed: f"seed{seed}")
def three_rounds(request, tmp_path_factory, one_torch_thread, trained_tiny_model, fresh_scenes) -> Rounds:
    """Three retraining rounds in a row from the trained fixture, then `capbot models rollback`."""
    seed, model_dir, base_data = request.param, trained_tiny_model.model_dir, trained_tiny_model.data_dir
    root = tmp_path_factory.mktemp(f"rounds-seed{seed}")
    engine, blobs = active_store(root, model_dir)
    before, _ = accuracy(model_dir, fresh_scenes)
    location, done = str(model_dir), []
    for old, new in ROUNDS:
        users_say = _renamer_for([(r.old, r.new) for r in done] + [(old, new)])
        add_feedback(engine, blobs, feedback(fresh_scenes, location, lambda scene, old=old: scene.main.shape == old,
                                              lambda item, said, say=users_say: say(item.captions[0])), users=USERS)
        result = retrain(recipe(engine, blobs, root, model_dir, base_data, seed))
        with db.session_scope(engine) as session:
            active = registry.get_active(session)
        aliases = {r.old: r.new for r in done} | {old: new}
        scores, captions = accuracy(active.location, fresh_scenes, aliases=aliases)
        done.append(Round(old, new, result, active, scores, captions))
        location = active.location
        print(f"seed {seed} round {len(done)} {old}->{new}: {result.status} ({result.message}); renames "
              f"{[(r.old, r.new, r.support, r.uses, r.users) for r in result.renames]}; "
              f"{_shape_line(before, scores, aliases)}; colour {scores['colour']:.3f} "
              f"(before {before['colour']:.3f})")
    output = _rollback_as_the_cli_does(f"sqlite:///{root / 'capbot.db'}", root / "data")
    with db.session_scope(engine) as session:
        restored = registry.get_active(session)
    _, after_rollback = accuracy(restored.location, fresh_scenes)
    engine.dispose()
    return Rounds(seed, before, done, restored, output, after_rollback)


def _shape_line(before: dict, accuracy: dict, aliases: dict) -> str:
    return ", ".join(f"{shape} as {aliases.get(shape, shape)} {accuracy['by_shape'][shape]['shape']:.3f} "
                     f"(recognised {before['by_shape'][shape]['shape']:.3f})" for shape in ("circle", "square", "triangle"))


def test_each_round_is_promoted_with_its_own_rename_on_top_of_the_earlier_ones(three_rounds, trained_tiny_model):
    parent = load_metadata(trained_tiny_model.model_dir).version
    for n, done in enumerate(three_rounds.rounds):
        result = done.result
        assert result.status == "promoted", (n, result.message)
        assert {(r.old, r.new) for r in result.renames} == {(done.old, done.new), _plural_pair(done.old, done.new)}
        earlier = three_rounds.rounds[:n]
        assert [i.version for i in result.inherited_renames] == [e.version.id for e in earlier]
        assert {(r.old, r.new) for i in result.inherited_renames for r in i.renames} == {
            pair for e in earlier for pair in ((e.old, e.new), _plural_pair(e.old, e.new))}
        assert done.version.id == result.candidate_version and done.version.parent_id == parent
        parent = done.version.id


def _plural_pair(old: str, new: str) -> tuple[str, str]:
    return old + "s", {"box": "boxes"}.get(new, new + "s")


def test_each_rename_is_adopted_on_held_out_images_of_its_concept(three_rounds):
    # With the encoder frozen, a new word reaches the images the model recognises as that shape, so the new
    # name is also held to within 10 points of the fixture's recognition of the concept.
    for done in three_rounds.rounds:
        renamed = done.accuracy["by_shape"][done.old]["shape"]
        recognised = three_rounds.before["by_shape"][done.old]["shape"]
        assert renamed >= 0.8 and renamed >= recognised - 0.1, (done.old, done.new, renamed, recognised)


def test_earlier_renames_stay_adopted_in_later_rounds(three_rounds):
    rounds = three_rounds.rounds
    for later_index, later in enumerate(rounds[1:], start=1):
        for earlier in rounds[:later_index]:
            kept = later.accuracy["by_shape"][earlier.old]["shape"]
            assert kept >= 0.8, (earlier.old, earlier.new, f"after round {later_index + 1}", kept)


def test_each_round_leaves_the_shapes_not_yet_renamed_as_they_were(three_rounds):
    rounds = three_rounds.rounds
    for n, done in enumerate(rounds[:-1]):
        waiting = [later.old for later in rounds[n + 1:]]
        before, after = _both(three_rounds.before["by_shape"], waiting), _both(done.accuracy["by_shape"], waiting)
        assert after >= before - 0.05, (f"round {n + 1}", waiting, before, after)


def test_colour_accuracy_on_all_held_out_images_drops_at_most_5_points_over_three_rounds(three_rounds):
    assert three_rounds.rounds[-1].accuracy["colour"] >= three_rounds.before["colour"] - 0.05


def test_a_rollback_after_round_three_returns_to_round_twos_behaviour_exactly(three_rounds):
    second = three_rounds.rounds[1]
    assert three_rounds.rolled_back_to.id == second.version.id
    assert three_rounds.captions_after_rollback == second.captions
    # and the next retraining applies round one's and round two's renames, not round three's
    assert "'circle' -> 'ball'" in three_rounds.rollback_output and "'square' -> 'box'" in three_rounds.rollback_output
    assert "wedge" not in three_rounds.rollback_output


@pytest.mark.parametrize("seed", SEEDS)
def test_random_word_feedback_is_not_promoted_and_the_reason_is_recorded(tmp_path, trained_tiny_model, fresh_scenes,
                                                                         seed):
    model_dir, base_data = trained_tiny_model.model_dir, trained_tiny_model.data_dir
    engine, blobs = active_store(tmp_path, model_dir)
    add_feedback(engine, blobs, feedback(fresh_scenes, model_dir, lambda scene: True, _random_words(5 + seed)),
                 users=USERS)

    result = retrain(recipe(engine, blobs, tmp_path, model_dir, base_data, seed))
    print(f"seed {seed}:", result.status, result.message, result.data_counts, result.renames)

    assert result.status == "not_promoted", result.message
    assert result.renames == []  # random words are no systematic rename, however many users type them
    with db.session_scope(engine) as session:
        assert registry.get_active(session).location == str(model_dir)
        candidate = registry.get_version(session, result.candidate_version)
        run = runs.get_run(session, result.run_id)
    assert candidate.status == "candidate" and candidate.metrics["gate"]["reason"] == result.message
    assert run.status == "not_promoted" and run.reason == result.message
