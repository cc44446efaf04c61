"""retrain() with screened feedback: consensus, junk set aside and counted, runs refused before training.

Training is a stand-in that stops the run once it has seen the mix (the learning tests train for real);
storage is real, so one user's repeated corrections, opt-outs and time windows behave as in production.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta

import pytest

from storage import db, registry, runs
from training.data.coco import load_split
from training.data.screen import ScreenRules
from training.retrain import retrain

from tests.training.retrain_support import StopTraining, add_feedback, config_for, stopping_trainer


def _mix_captions(job) -> list[tuple[str, ...]]:
    return [item.captions for item in load_split(job.data_dir, "train", check_images=False).items]


def test_feedback_from_too_few_users_is_refused_before_training_and_recorded(store, tmp_path, tiny_model_dir,
                                                                             synthetic_dataset, feedback_images):
    engine, blobs = store
    add_feedback(engine, blobs, feedback_images, users=("u1", "u2"))
    config = config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir)
    calls = []
    result = retrain(config, trainer=stopping_trainer(calls))

    assert result.status == "not_promoted" and calls == []
    assert result.message == ("refused before training: the feedback left after screening comes from 2 distinct "
                              "user(s); at least 3 needed (CAPBOT_RETRAIN_MIN_USERS)")
    with db.session_scope(engine) as session:
        (run,) = runs.list_runs(session)
        assert registry.list_versions(session) == []
    assert (run.id, run.status, run.reason, run.result_version) == (result.run_id, "not_promoted", result.message, None)
    assert run.finished_at is not None and run.metrics["refused_before_training"] is True
    assert run.data_counts == asdict(result.data_counts)
    assert (run.data_counts["feedback_new"], run.data_counts["corrections"], run.data_counts["users"]) == (12, 12, 2)

    # The refusal closes the "new feedback" window like a gate refusal: the same feedback is not refused again.
    again = retrain(config, trainer=stopping_trainer(calls))
    assert again.status == "skipped" and "0 new corrected image(s)" in again.message
    with db.session_scope(engine) as session:
        assert len(runs.list_runs(session)) == 1

    # A third user agrees on the same images: new feedback, and the run trains on everything since the last
    # promotion (none), the refused run's corrections included: each image now has two agreeing users.
    add_feedback(engine, blobs, feedback_images, users=("u3",), now=run.started_at + timedelta(milliseconds=1))
    with pytest.raises(StopTraining):
        retrain(config, trainer=stopping_trainer(calls))
    with db.session_scope(engine) as session:
        latest = runs.list_runs(session)[0]
    assert latest.data_counts["corrections"] == 24 and latest.data_counts["users"] == 3
    assert latest.data_counts["feedback"] + latest.data_counts["feedback_held_out"] == 12
    assert latest.feedback_since is None  # the training window still starts at the last promotion


def test_a_dry_run_says_it_would_refuse_and_records_nothing(store, tmp_path, tiny_model_dir, synthetic_dataset,
                                                            feedback_images):
    engine, blobs = store
    add_feedback(engine, blobs, feedback_images, users=("ip:1f2e",), platform="web")
    config = config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir, dry_run=True,
                        min_feedback=11, screen_rules=ScreenRules(max_images_per_user=10))
    result = retrain(config)
    assert result.status == "dry_run" and result.message.startswith("dry run: would be refused before training")
    assert "1 distinct user(s)" in result.message
    assert "10 of the 12 new corrected image(s) are left after screening; at least 11 needed" in result.message
    assert "(set aside: 2 correction(s) beyond a user's per-run cap)" in result.message
    assert (result.data_counts.over_user_cap, result.data_counts.users) == (2, 1)
    with db.session_scope(engine) as session:
        assert runs.list_runs(session) == []


_VARIED = ("a red circle", "a green square", "a blue triangle", "two yellow squares", "three purple circles",
           "an orange triangle on the left")


def test_junk_is_set_aside_counted_and_kept_out_of_the_mix(store, tmp_path, tiny_model_dir, synthetic_dataset,
                                                           feedback_images):
    engine, blobs = store
    train = load_split(synthetic_dataset.out_dir, "train").items
    add_feedback(engine, blobs, feedback_images, users=("u1",))
    add_feedback(engine, blobs, feedback_images, users=("u2",))
    # u3 agrees on nine images and is outvoted on three.
    add_feedback(engine, blobs, [(p, m, "a purple star far away") for p, m, _ in feedback_images[:3]], users=("u3",))
    add_feedback(engine, blobs, feedback_images[3:], users=("u3",))
    # Users disagree about two base-train images; u1's correction of the second is their 14th, over a cap
    # of 13: so image 0 is disputed (u1 and u3) and image 1 is u2's alone.
    add_feedback(engine, blobs, [(p.path, "a red circle", "a red ball") for p in train[:2]], users=("u1",))
    add_feedback(engine, blobs, [(train[0].path, "a red circle", "a blue ball")], users=("u3",))
    add_feedback(engine, blobs, [(train[1].path, "a red circle", "a blue ball")], users=("u2",))
    # One web address pastes the same words on six unrelated images.
    add_feedback(engine, blobs, [(p.path, said, "zorax plimilo!") for p, said in zip(train[2:8], _VARIED)],
                 users=("ip:5a4b",), platform="web")

    config = config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir,
                        screen_rules=ScreenRules(max_images_per_user=13))
    dry = retrain(config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir, dry_run=True,
                             screen_rules=ScreenRules(max_images_per_user=13)))
    counts = dry.data_counts
    assert (counts.corrections, counts.spam, counts.over_user_cap, counts.outvoted, counts.disputed, counts.users) == (
        46, 6, 1, 3, 1, 3)
    assert counts.feedback + counts.feedback_held_out == 13  # the twelve agreed images and train image 1
    assert dry.message.endswith("(set aside: 6 correction(s) as copy-paste spam, 1 correction(s) beyond a user's "
                                "per-run cap, 3 correction(s) outvoted by their image's majority, 1 disputed image(s))")

    calls = []
    with pytest.raises(StopTraining):
        retrain(config, trainer=stopping_trainer(calls))
    captions = [c for captions in _mix_captions(calls[0]) for c in captions]
    assert not any("zorax" in c or c == "a purple star far away" for c in captions)  # no spam, no minority
    assert captions.count("a red ball") == 0 and captions.count("a blue ball") in (0, 1)  # disputed; u2's single
    # Agreed images are listed twice (agreement_cap 2); the single-user image once if it is not held out.
    agreed = [fixed for _, _, fixed in feedback_images]
    listed = [captions.count(fixed) for fixed in agreed]
    assert set(listed) <= {0, 2} and listed.count(2) == counts.feedback - captions.count("a blue ball")
    with db.session_scope(engine) as session:
        run = runs.list_runs(session)[0]
    assert run.data_counts == asdict(counts)


def test_agreeing_users_each_count_as_rename_evidence(store, tmp_path, tiny_model_dir, synthetic_dataset):
    engine, blobs = store
    test = load_split(synthetic_dataset.out_dir, "test").items[:4]
    renaming = [(item.path, "a red circle on the left", "a red ball on the left") for item in test]
    add_feedback(engine, blobs, renaming)  # one user per image (u1, u2, u3, u1)
    config = dict(min_feedback=4, dry_run=True)
    alone = retrain(config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir, **config))
    assert alone.renames == [] and alone.data_counts.feedback == 2  # two corrections: too little support
    for user in ("u4", "u5"):
        add_feedback(engine, blobs, renaming, users=(user,))
    agreed = retrain(config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir, **config))
    # The same two training images, now with three agreeing users each: six corrections from five users.
    assert agreed.data_counts.feedback == 2
    assert [(r.old, r.new, r.support, r.users) for r in agreed.renames] == [("circle", "ball", 6, 4)]
