"""retrain(): early stop, dry run, gate bookkeeping, the lock, and crash recovery.

Training is a copying stand-in and captions come from a table here, so these tests check the
orchestration and its records; test_retrain_learning.py runs the real training and captioning.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta

import hashlib
import os
import re
import subprocess
import sys
import textwrap
import threading

import pytest

from storage import db, registry, runs
from training.data.coco import load_split
from training.data.renames import RenameRules
from training.lock import RetrainLocked, run_lock_for
from training.retrain import INTERRUPTED, RetrainError, retrain

from tests.training.retrain_support import (
    StopTraining, TableCaptioner, add_feedback, config_for, copying_trainer, open_store, stopping_trainer, version_of,
)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _captioners(base_model, synthetic_dataset, feedback_images, *, candidate_base_ok=True, fail=False):
    """Active: right on base images, model captions on feedback. Candidate: learned the corrections."""
    val = load_split(synthetic_dataset.out_dir, "val")
    base_right = {_sha(item.path): item.captions[0] for item in val.items}
    active = {**base_right, **{_sha(p): model for p, model, _ in feedback_images}}
    candidate = {**(base_right if candidate_base_ok else {}), **{_sha(p): fixed for p, _, fixed in feedback_images}}

    def make(location: str):
        if fail and location != str(base_model):
            raise RuntimeError("evaluation blew up")
        if location == str(base_model):
            return TableCaptioner("active", active)
        return TableCaptioner("candidate", candidate, default="zzz qqq")

    return make


def test_too_little_feedback_stops_early_and_records_nothing(store, tmp_path, tiny_model_dir, synthetic_dataset, feedback_images):
    engine, blobs = store
    add_feedback(engine, blobs, feedback_images[:3])
    config = config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir)
    result = retrain(config, trainer=copying_trainer())
    assert result.status == "skipped"
    assert "too little feedback" in result.message and "3 new" in result.message and "at least 8" in result.message
    with db.session_scope(engine) as session:
        assert runs.list_runs(session) == [] and registry.list_versions(session) == []


def test_missing_base_data_is_a_clear_error(store, tmp_path, tiny_model_dir, feedback_images):
    engine, blobs = store
    add_feedback(engine, blobs, feedback_images)
    with pytest.raises(RetrainError) as info:
        retrain(config_for(engine, blobs, tmp_path, tiny_model_dir, None), trainer=copying_trainer())
    assert info.value.reason == "no_base_data" and "CAPBOT_RETRAIN_BASE_DATA" in info.value.message


def test_dry_run_reports_the_mix_and_changes_nothing(store, tmp_path, tiny_model_dir, synthetic_dataset, feedback_images):
    engine, blobs = store
    add_feedback(engine, blobs, feedback_images)
    calls = []
    result = retrain(config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir, dry_run=True),
                     trainer=copying_trainer(calls))
    assert result.status == "dry_run" and calls == []
    assert result.data_counts.feedback + result.data_counts.feedback_held_out == 12
    assert result.data_counts.feedback_held_out >= 4 and result.data_counts.base == result.data_counts.feedback
    with db.session_scope(engine) as session:
        assert runs.list_runs(session) == []


def test_gate_promotes_a_better_candidate_and_records_it(tmp_path, tiny_model_dir, synthetic_dataset, feedback_images):
    engine, blobs = open_store(f"sqlite:///{tmp_path / 'c.db'}", tmp_path)
    add_feedback(engine, blobs, feedback_images)
    calls = []
    config = config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir)
    result = retrain(config, trainer=copying_trainer(calls),
                     captioner_factory=_captioners(tiny_model_dir, synthetic_dataset, feedback_images))
    assert result.status == "promoted", result.message
    assert calls[0].init_model == str(tiny_model_dir) and calls[0].parent_version is None
    mix = load_split(calls[0].data_dir, "train")
    assert len(mix) == result.data_counts.feedback + result.data_counts.base
    with db.session_scope(engine) as session:
        active = registry.get_active(session)
        run = runs.get_run(session, result.run_id)
    assert active.id == result.candidate_version and active.metrics["gate"]["promote"] is True
    assert run.status == "promoted" and run.result_version == active.id and run.reason is None
    assert run.metrics["candidate"]["feedback"]["cider"] > run.metrics["active"]["feedback"]["cider"]
    assert result.metrics.candidate.feedback.cider == run.metrics["candidate"]["feedback"]["cider"]
    assert result.message.startswith("better on held-out feedback") and run.metrics["gate"]["reason"] == result.message
    assert run.data_counts == asdict(result.data_counts) and run.data_counts["feedback"] == result.data_counts.feedback

    assert run.metrics["candidate"]["base"]["meteor"] is None  # not requested: no JVM start

    # Next time: too little new feedback (the same corrections are not new), then fine-tune from the new active.
    assert retrain(config, trainer=copying_trainer()).status == "skipped"
    # Dated just after the promoted run started, so they count as new however fast that run was.
    add_feedback(engine, blobs, feedback_images, users=("u4", "u5", "u6"),
                 now=run.started_at + timedelta(milliseconds=1))
    with pytest.raises(StopTraining):
        retrain(config, trainer=stopping_trainer(calls))
    assert calls[-1].init_model == active.location and calls[-1].parent_version == active.id


def test_gate_refusal_is_recorded_in_the_run_and_the_registry(tmp_path, tiny_model_dir, synthetic_dataset, feedback_images):
    engine, blobs = open_store(f"sqlite:///{tmp_path / 'c.db'}", tmp_path)
    add_feedback(engine, blobs, feedback_images)
    config = config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir)
    result = retrain(config, trainer=copying_trainer(), captioner_factory=_captioners(
        tiny_model_dir, synthetic_dataset, feedback_images, candidate_base_ok=False))
    assert result.status == "not_promoted" and "base CIDEr dropped too much" in result.message
    with db.session_scope(engine) as session:
        assert registry.get_active(session) is None
        version = registry.get_version(session, result.candidate_version)
        run = runs.get_run(session, result.run_id)
    assert version.status == "candidate" and "base CIDEr dropped too much" in version.metrics["gate"]["reason"]
    assert run.status == "not_promoted" and run.reason == result.message


def test_a_second_run_refuses_while_the_first_holds_the_lock(store, tmp_path, tiny_model_dir, synthetic_dataset, feedback_images):
    engine, blobs = store
    add_feedback(engine, blobs, feedback_images)
    config = config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir)
    training, release, outcome = threading.Event(), threading.Event(), {}

    def slow_trainer(job):
        training.set()
        release.wait(30)
        raise RuntimeError("stop here")

    def first_run():
        try:
            retrain(config, trainer=slow_trainer)
        except RuntimeError as exc:
            outcome["first"] = str(exc)

    thread = threading.Thread(target=first_run)
    thread.start()
    try:
        assert training.wait(30)
        with pytest.raises(RetrainLocked) as info:
            retrain(config, trainer=copying_trainer())
        assert info.value.reason == "retrain_locked"
    finally:
        release.set()
        thread.join(30)
    assert outcome["first"] == "stop here"
    with db.session_scope(engine) as session:
        (run,) = runs.list_runs(session)
    assert run.status == "failed" and "stop here" in run.reason  # the refused run recorded nothing


def test_crash_after_the_candidate_is_registered_leaves_nothing_promoted(tmp_path, tiny_model_dir, synthetic_dataset, feedback_images):
    engine, blobs = open_store(f"sqlite:///{tmp_path / 'c.db'}", tmp_path)
    add_feedback(engine, blobs, feedback_images)
    config = config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir)
    with pytest.raises(RuntimeError, match="evaluation blew up"):
        retrain(config, trainer=copying_trainer(),
                captioner_factory=_captioners(tiny_model_dir, synthetic_dataset, feedback_images, fail=True))
    with db.session_scope(engine) as session:
        (version,) = registry.list_versions(session)
        (run,) = runs.list_runs(session)
        assert registry.get_active(session) is None
    assert version.status == "candidate" and "gate" not in version.metrics
    assert run.status == "failed" and "evaluation blew up" in run.reason

    # Running again recovers: the failed run's feedback is still new, and this time it is promoted.
    result = retrain(config, trainer=copying_trainer(),
                     captioner_factory=_captioners(tiny_model_dir, synthetic_dataset, feedback_images))
    assert result.status == "promoted"
    assert result.data_counts.feedback + result.data_counts.feedback_held_out == 12


_DIES_MID_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from tests.training.retrain_support import config_for, copying_trainer, open_store
    from training.retrain import retrain

    url, root, model, data = sys.argv[1:5]
    engine, blobs = open_store(url, Path(root))
    copy = copying_trainer()

    def dies(job):
        copy(job)  # half-written work on disk, then the process is killed without any cleanup
        os.kill(os.getpid(), signal.SIGKILL)

    retrain(config_for(engine, blobs, Path(root), Path(model), Path(data)), trainer=dies)
    """
)


def test_a_run_killed_mid_training_is_marked_failed_by_the_next_run(store, database_url, tmp_path, tiny_model_dir, synthetic_dataset, feedback_images):
    engine, blobs = store
    add_feedback(engine, blobs, feedback_images)
    proc = subprocess.run([sys.executable, "-c", _DIES_MID_RUN, database_url, str(tmp_path), str(tiny_model_dir),
                           str(synthetic_dataset.out_dir)], cwd=os.getcwd(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    with db.session_scope(engine) as session:
        (dead,) = runs.list_runs(session)
        assert dead.status == "running" and registry.list_versions(session) == []

    # The next run marks the dead one failed and goes on to train (stopped there by the test).
    calls = []
    config = config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir)
    with pytest.raises(StopTraining):
        retrain(config, trainer=stopping_trainer(calls))
    assert len(calls) == 1
    with db.session_scope(engine) as session:
        dead_now = runs.get_run(session, dead.id)
        latest = runs.list_runs(session)[0]
    assert dead_now.status == "failed" and dead_now.reason == INTERRUPTED
    assert latest.id != dead.id and latest.status == "failed" and "stopped by the test" in latest.reason


def test_feedback_too_thin_to_hold_out_any_is_refused_before_a_run_starts(store, tmp_path, tiny_model_dir, synthetic_dataset, feedback_images):
    engine, blobs = store
    add_feedback(engine, blobs, feedback_images[:1])
    config = config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir, min_feedback=1,
                        min_users=1)
    with pytest.raises(RetrainError) as info:
        retrain(config, trainer=copying_trainer())
    assert info.value.reason == "no_training_feedback" and "holding out 0" in info.value.message
    with db.session_scope(engine) as session:
        assert runs.list_runs(session) == []


def _renaming_feedback(synthetic_dataset):
    """Twelve corrections that each swap the model's "circle" for "ball", worded differently each time."""
    test = load_split(synthetic_dataset.out_dir, "test")
    places = ("on the left", "at the top", "in the middle")
    return [(item.path, f"a red circle {places[i % 3]}", f"a red ball {places[(i + 1) % 3]}")
            for i, item in enumerate(test.items)]


def _mix_by_source(data_dir, synthetic_dataset, feedback):
    """The training mix a run wrote, as (captions in the mix, the original captions) for its base images
    and (captions in the mix, the correction) for its feedback images, matched by image content."""
    originals = {_sha(item.path): item.captions for item in load_split(synthetic_dataset.out_dir, "train").items}
    corrections = {_sha(path): (fixed,) for path, _, fixed in feedback}
    base, from_feedback = [], []
    for item in load_split(data_dir, "train").items:
        sha = _sha(item.path)
        if sha in corrections:
            from_feedback.append((item.captions, corrections[sha]))
        else:
            base.append((item.captions, originals[sha]))
    return base, from_feedback


def test_a_systematic_rename_in_feedback_is_applied_to_the_base_references(tmp_path, tiny_model_dir, synthetic_dataset):
    engine, blobs = open_store(f"sqlite:///{tmp_path / 'c.db'}", tmp_path)
    feedback = _renaming_feedback(synthetic_dataset)
    add_feedback(engine, blobs, feedback)  # from three users
    config = config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir)
    dry = retrain(config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir, dry_run=True))
    n_train = dry.data_counts.feedback
    assert [r.to_dict() for r in dry.renames] == [
        {"old": "circle", "new": "ball", "support": n_train, "uses": n_train, "users": 3}]
    assert (f'base references renamed: "circle" -> "ball" ({n_train} of {n_train} corrections, 3 users)'
            in dry.message)

    calls = []
    result = retrain(config, trainer=copying_trainer(calls),
                     captioner_factory=_captioners(tiny_model_dir, synthetic_dataset, feedback))
    base, from_feedback = _mix_by_source(calls[0].data_dir, synthetic_dataset, feedback)
    # Every base reference is rewritten exactly: the singular word only (users never renamed "circles"),
    # whole words only, everything else as it was; the users' corrections are trained on as they wrote them.
    assert len(base) == result.data_counts.base and len(from_feedback) == n_train
    assert all(mixed == tuple(re.sub(r"\bcircle\b", "ball", c) for c in original) for mixed, original in base)
    assert any(mixed != original for mixed, original in base)  # some base images are circles
    assert all(mixed == fixed for mixed, fixed in from_feedback)
    with db.session_scope(engine) as session:
        run = runs.get_run(session, result.run_id)
    assert run.metrics["renames"] == [r.to_dict() for r in dry.renames] and result.data_counts.renames == 1


def test_a_rename_needs_as_many_distinct_users_as_configured(tmp_path, tiny_model_dir, synthetic_dataset):
    engine, blobs = open_store(f"sqlite:///{tmp_path / 'c.db'}", tmp_path)
    add_feedback(engine, blobs, _renaming_feedback(synthetic_dataset), users=("u1", "u2"))
    # min_users=2: two users may train (the run's own rule), the rename rule is what is tested here
    two_users = config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir, dry_run=True,
                           min_users=2)
    assert retrain(two_users).renames == []  # the default needs 3
    two_enough = config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir, dry_run=True,
                            min_users=2, rename_rules=RenameRules(min_users=2))
    assert [(r.old, r.new, r.users) for r in retrain(two_enough).renames] == [("circle", "ball", 2)]


def test_renames_can_be_switched_off(tmp_path, tiny_model_dir, synthetic_dataset):
    engine, blobs = open_store(f"sqlite:///{tmp_path / 'c.db'}", tmp_path)
    feedback = _renaming_feedback(synthetic_dataset)
    add_feedback(engine, blobs, feedback)
    calls = []
    with pytest.raises(StopTraining):
        retrain(config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir, rename_rules=None),
                trainer=stopping_trainer(calls))
    base, _ = _mix_by_source(calls[0].data_dir, synthetic_dataset, feedback)
    assert base and all(mixed == original for mixed, original in base)
    assert any("circle" in c for mixed, _ in base for c in mixed)  # what the rename would have changed


def test_the_first_promotion_keeps_the_base_model_to_roll_back_to(tmp_path, tiny_model_dir, synthetic_dataset, feedback_images):
    engine, blobs = open_store(f"sqlite:///{tmp_path / 'c.db'}", tmp_path)
    add_feedback(engine, blobs, feedback_images)
    config = config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir)
    result = retrain(config, trainer=copying_trainer(),
                     captioner_factory=_captioners(tiny_model_dir, synthetic_dataset, feedback_images))
    assert result.status == "promoted" and result.active_version is None  # the base model served before
    with db.session_scope(engine) as session:
        restored = registry.rollback(session)
    assert restored.location == str(tiny_model_dir) and restored.id == version_of(str(tiny_model_dir))
    with db.session_scope(engine) as session:
        assert registry.get_active(session).id == restored.id
        assert registry.get_version(session, result.candidate_version).status != "active"


# --- resuming an interrupted run (issue 21: a preempted Modal Cron run) -------------------------------------

def _interrupted_first_run(config, monkeypatch, interruption: BaseException) -> None:
    """A real fine-tune that saves its first checkpoint and is then stopped by `interruption`."""
    from training.retrain import default_trainer
    from training.train_run import Run

    saved = Run.checkpoint

    def stopped_after_one(self, *args):
        saved(self, *args)
        raise interruption

    monkeypatch.setattr(Run, "checkpoint", stopped_after_one)
    with pytest.raises(type(interruption)):
        retrain(config, trainer=default_trainer)
    monkeypatch.setattr(Run, "checkpoint", saved)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("case", ["stopped", "failed with an error", "active version moved"])
def test_only_a_stopped_run_on_unchanged_data_is_resumed(case, store, tmp_path, tiny_model_dir, synthetic_dataset,
                                                         feedback_images, monkeypatch, one_torch_thread):
    from modal.exception import InputCancellation

    engine, blobs = store
    add_feedback(engine, blobs, feedback_images)
    config = config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir, resume=True,
                        checkpoint_every=1, epochs=1, batch_size=4)
    _interrupted_first_run(config, monkeypatch, RuntimeError("CUDA error") if case.startswith("failed")
                           else InputCancellation("preempted"))
    if case == "active version moved":
        with db.session_scope(engine) as session:
            registry.register_version(session, version_id="elsewhere", location=str(tiny_model_dir))
            registry.promote(session, "elsewhere")
    calls = []
    result = retrain(config, trainer=copying_trainer(calls),
                     captioner_factory=_captioners(tiny_model_dir, synthetic_dataset, feedback_images))
    with db.session_scope(engine) as session:
        first, second = sorted(runs.list_runs(session), key=lambda run: run.id)
    resumes = case == "stopped"
    assert (result.resumed_run, calls[0].resume) == ((first.id, True) if resumes else (None, False))
    assert calls[0].work_dir == tmp_path / "runs" / f"run-{first.id if resumes else second.id}" / "train"
    assert (second.started_at == first.started_at) is resumes  # a resumed run keeps the feedback window
