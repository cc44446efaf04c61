"""retrain() over several rounds: renames adopted by earlier promoted runs keep applying to the base data, and
a rollback changes which do. Training is a copying stand-in and captions come from tables, so these tests
check what each run trains on, is scored against and records; test_retrain_learning.py runs the real thing.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest

from storage import db, registry, runs
from storage.clock import utcnow
from training.data.coco import load_split
from training.data.synthetic import generate_synthetic
from training.retrain import retrain

from tests.training.retrain_support import TableCaptioner, add_feedback, config_for, copying_trainer, open_store

PLACES = ("on the left", "at the top", "in the middle")


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def feedback_images(tmp_path_factory):
    """36 images no base split holds: twelve for each round's corrections."""
    out = tmp_path_factory.mktemp("feedback_images")
    generate_synthetic(out, n_train=36, n_val=2, n_test=2, seed=7, image_size=32)
    return [item.path for item in load_split(out, "train").items]


@pytest.fixture
def store(tmp_path):
    engine, blobs = open_store(f"sqlite:///{tmp_path / 'c.db'}", tmp_path)
    yield engine, blobs
    engine.dispose()


def _corrections(images, old: str, new: str) -> list[tuple]:
    """One correction per image swapping the model's `old` for `new`, worded differently each time."""
    return [(path, f"a red {old} {PLACES[i % 3]}", f"a red {new} {PLACES[(i + 1) % 3]}") for i, path in enumerate(images)]


def _swap(text: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        text = re.sub(rf"\b{old}\b", new, text)
    return text


def _add(engine, blobs, feedback) -> None:
    """Record feedback after the last run started (a run trains on corrections since the last promoted one)."""
    now = utcnow() - timedelta(milliseconds=100)
    with db.session_scope(engine) as session:
        last = runs.list_runs(session, limit=1)
    assert not last or last[0].started_at < now, "the previous run started too recently for this test's clock"
    add_feedback(engine, blobs, feedback, now=now)


def _captioners(engine, base_data, feedback, *, active_says: tuple, candidate_says: tuple):
    """Captioners for one round, told apart by location: the active version says the base references with the
    `active_says` swaps and the model's captions on feedback; the candidate the base references with the
    `candidate_says` swaps and the corrections."""
    with db.session_scope(engine) as session:
        active = registry.get_active(session)
    active_location = active.location if active else None
    val = load_split(base_data, "val").items
    active_table = {**{_sha(i.path): _swap(i.captions[0], *active_says) for i in val},
                    **{_sha(p): said for p, said, _ in feedback}}
    candidate_table = {**{_sha(i.path): _swap(i.captions[0], *candidate_says) for i in val},
                       **{_sha(p): fixed for p, _, fixed in feedback}}

    def make(location: str):
        is_active = location == active_location or (active_location is None and "models" not in location)
        return TableCaptioner("active" if is_active else "candidate", active_table if is_active else candidate_table)

    return make


def _round(engine, blobs, tmp_path, base_model, base_data, feedback, *, active_says=(), candidate_says=(), calls=None):
    _add(engine, blobs, feedback)
    config = config_for(engine, blobs, tmp_path, base_model, base_data, feedback_fraction=0.2)  # most base images
    return retrain(config, trainer=copying_trainer(calls),
                   captioner_factory=_captioners(engine, base_data, feedback, active_says=active_says,
                                                 candidate_says=candidate_says))


def _dry_run(engine, blobs, tmp_path, base_model, base_data):
    return retrain(config_for(engine, blobs, tmp_path, base_model, base_data, dry_run=True))


def _mixed_base(data_dir, base_data) -> list[tuple[tuple, tuple]]:
    """(captions in the run's mix, the original captions) for each base image the run trained on."""
    originals = {_sha(item.path): item.captions for item in load_split(base_data, "train").items}
    return [(item.captions, originals[_sha(item.path)]) for item in load_split(data_dir, "train").items
            if _sha(item.path) in originals]


BALL, BOX = ("circle", "ball"), ("square", "box")


def test_the_second_round_trains_and_is_scored_with_the_first_rounds_rename_too(store, tmp_path, tiny_model_dir,
                                                                                 synthetic_dataset, feedback_images):
    engine, blobs = store
    base = synthetic_dataset.out_dir
    first = _round(engine, blobs, tmp_path, tiny_model_dir, base, _corrections(feedback_images[:12], *BALL),
                   candidate_says=(BALL,))
    assert first.status == "promoted" and [(r.old, r.new) for r in first.renames] == [BALL]
    assert first.inherited_renames == [] and first.data_counts.inherited_renames == 0

    # Round two: the active version says "ball" (it learned it) and "square"; users call squares boxes.
    calls = []
    second = _round(engine, blobs, tmp_path, tiny_model_dir, base, _corrections(feedback_images[12:24], *BOX),
                    active_says=(BALL,), candidate_says=(BALL, BOX), calls=calls)
    assert second.status == "promoted", second.message
    assert [(r.old, r.new) for r in second.renames] == [BOX]
    assert [(i.version, i.run_id, [(r.old, r.new) for r in i.renames]) for i in second.inherited_renames] == [
        (first.candidate_version, first.run_id, [BALL])]
    assert second.data_counts.inherited_renames == 1 and second.data_counts.renames == 1

    # Every base reference it trained on carries both renames, and nothing else changed.
    mixed = _mixed_base(calls[0].data_dir, base)
    assert mixed and all(now == tuple(_swap(c, BALL, BOX) for c in original) for now, original in mixed)
    assert any(re.search(r"\bball\b", c) for now, _ in mixed for c in now)
    assert any(re.search(r"\bbox\b", c) for now, _ in mixed for c in now)

    with db.session_scope(engine) as session:
        run = runs.get_run(session, second.run_id)
        version = registry.get_version(session, second.candidate_version)
    assert run.metrics["inherited_renames"] == [i.to_dict() for i in second.inherited_renames]
    assert run.metrics["renames"] == [r.to_dict() for r in second.renames] == version.metrics["renames"]


def test_a_new_renames_novelty_is_judged_against_the_renamed_base(store, tmp_path, tiny_model_dir, synthetic_dataset,
                                                                  feedback_images):
    engine, blobs = store
    base = synthetic_dataset.out_dir
    _round(engine, blobs, tmp_path, tiny_model_dir, base, _corrections(feedback_images[:12], *BALL),
           candidate_says=(BALL,))

    # The original base data never says "ball", so "ball" -> "sphere" is only a rename once "circle" -> "ball"
    # applies; and "circle" -> "ball" is not adopted a second time (no base reference says "circle" any more).
    _add(engine, blobs, _corrections(feedback_images[12:24], "ball", "sphere")
         + _corrections(feedback_images[24:], *BALL))
    dry = _dry_run(engine, blobs, tmp_path, tiny_model_dir, base)
    assert [(r.old, r.new) for r in dry.renames] == [("ball", "sphere")]
    assert [(r.old, r.new) for i in dry.inherited_renames for r in i.renames] == [BALL]
    assert '"ball" -> "sphere"' in dry.message and 'renamed in earlier rounds: "circle" -> "ball"' in dry.message


def test_after_a_rollback_the_next_run_applies_only_the_restored_versions_renames(store, tmp_path, tiny_model_dir,
                                                                                   synthetic_dataset, feedback_images):
    engine, blobs = store
    base = synthetic_dataset.out_dir
    first = _round(engine, blobs, tmp_path, tiny_model_dir, base, _corrections(feedback_images[:12], *BALL),
                   candidate_says=(BALL,))
    second = _round(engine, blobs, tmp_path, tiny_model_dir, base, _corrections(feedback_images[12:24], *BOX),
                    active_says=(BALL,), candidate_says=(BALL, BOX))
    assert first.status == second.status == "promoted"

    _add(engine, blobs, _corrections(feedback_images[24:], "triangle", "wedge"))
    before = _dry_run(engine, blobs, tmp_path, tiny_model_dir, base)
    assert [i.version for i in before.inherited_renames] == [first.candidate_version, second.candidate_version]
    with db.session_scope(engine) as session:
        assert registry.rollback(session).id == first.candidate_version
    after = _dry_run(engine, blobs, tmp_path, tiny_model_dir, base)
    assert [(i.version, [(r.old, r.new) for r in i.renames]) for i in after.inherited_renames] == [
        (first.candidate_version, [BALL])]
    assert [(r.old, r.new) for r in after.renames] == [("triangle", "wedge")]
    assert after.data_counts.inherited_renames == 1


def test_the_gate_counts_forgetting_an_earlier_rename_against_the_candidate(store, tmp_path, tiny_model_dir,
                                                                            synthetic_dataset, feedback_images):
    engine, blobs = store
    base = synthetic_dataset.out_dir
    _round(engine, blobs, tmp_path, tiny_model_dir, base, _corrections(feedback_images[:12], *BALL),
           candidate_says=(BALL,))
    # The candidate went back to "circle"; the active version says "ball". The gate's base references carry the
    # first round's rename, so that costs the candidate (scored against "circle" references, it would gain).
    second = _round(engine, blobs, tmp_path, tiny_model_dir, base, _corrections(feedback_images[12:24], *BOX),
                    active_says=(BALL,), candidate_says=())
    assert second.metrics.candidate.base.cider < second.metrics.active.base.cider
