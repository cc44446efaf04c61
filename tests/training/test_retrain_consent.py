"""Training consent per community: a community that withdraws it is left out of the next retraining run."""

from __future__ import annotations

import hashlib
import json

import pytest

from storage import communities, db
from training.retrain import retrain

from tests.training.retrain_support import StopTraining, add_feedback, config_for, stopping_trainer


def _trained_images(job) -> set[str]:
    """The SHA-256 of every image in the training mix the trainer was given."""
    split = json.loads((job.data_dir / "annotations" / "captions_train.json").read_text())
    return {hashlib.sha256((job.data_dir / "train" / image["file_name"]).read_bytes()).hexdigest()
            for image in split["images"]}


def _next_run_trains_on(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset, **overrides) -> set[str]:
    calls: list = []
    config = config_for(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset.out_dir, min_feedback=4,
                        min_held_out=2, **overrides)
    with pytest.raises(StopTraining):
        retrain(config, trainer=stopping_trainer(calls))
    return _trained_images(calls[0])


def test_withdrawn_consent_removes_the_communitys_images_from_the_next_retraining(
        store, tmp_path, tiny_model_dir, synthetic_dataset, feedback_images):
    engine, blobs = store
    ours = set(add_feedback(engine, blobs, feedback_images[:6], workspace="TOURS", users=("u1", "u2", "u3")))
    theirs = set(add_feedback(engine, blobs, feedback_images[6:], workspace="TTHEIRS", users=("u4", "u5", "u6")))

    before = _next_run_trains_on(engine, blobs, tmp_path / "first", tiny_model_dir, synthetic_dataset)
    assert ours & before and theirs & before

    with db.session_scope(engine) as session:
        communities.set_training_consent(session, platform="slack", workspace_id="TOURS", consent=False, by="UADMIN")
    after = _next_run_trains_on(engine, blobs, tmp_path / "second", tiny_model_dir, synthetic_dataset)
    assert not ours & after and theirs & after


def test_without_a_default_consent_only_communities_that_said_yes_train(
        store, tmp_path, tiny_model_dir, synthetic_dataset, feedback_images):
    engine, blobs = store
    ours = set(add_feedback(engine, blobs, feedback_images[:6], workspace="TOURS", users=("u1", "u2", "u3")))
    theirs = set(add_feedback(engine, blobs, feedback_images[6:], workspace="TTHEIRS", users=("u4", "u5", "u6")))
    with db.session_scope(engine) as session:
        communities.set_training_consent(session, platform="slack", workspace_id="TTHEIRS", consent=True)

    trained = _next_run_trains_on(engine, blobs, tmp_path, tiny_model_dir, synthetic_dataset, consent_default=False)
    assert not ours & trained and theirs & trained
