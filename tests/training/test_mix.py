"""The retraining mix: feedback fraction, evaluation images kept out by content hash, COCO output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from storage.feedback import FeedbackRow
from training.data.coco import load_split
from training.data.mix import MixCounts, base_count_for, build_mix, file_sha256, image_hashes, write_coco_split


@pytest.mark.parametrize(
    ("n_feedback", "fraction", "available", "expected"),
    [(40, 0.5, 100, 40), (30, 0.25, 1000, 90), (30, 0.25, 50, 50), (10, 1.0, 100, 0), (0, 0.5, 100, 0)],
)
def test_base_count_follows_the_feedback_fraction(n_feedback, fraction, available, expected):
    assert base_count_for(n_feedback, fraction, available) == expected


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_base_count_rejects_impossible_fractions(fraction):
    with pytest.raises(ValueError):
        base_count_for(10, fraction, 100)


def _blob_copy(src: Path, blobs: Path) -> FeedbackRow:
    # Copy under the content address, as the blob store does, so the path says nothing about the origin.
    sha = file_sha256(src)
    blobs.mkdir(exist_ok=True)
    shutil.copyfile(src, blobs / sha)
    return FeedbackRow(sha, blobs / sha, f"a ball number {sha[:4]}")


def test_mix_drops_feedback_images_that_are_in_an_eval_set_and_round_trips(synthetic_dataset, tmp_path):
    base = load_split(synthetic_dataset.out_dir, "train")
    val = load_split(synthetic_dataset.out_dir, "val")
    test = load_split(synthetic_dataset.out_dir, "test")
    from_val = [_blob_copy(item.path, tmp_path / "blobs") for item in val.items[:3]]
    fresh = [_blob_copy(item.path, tmp_path / "blobs") for item in test.items[:8]]
    eval_hashes = image_hashes(item.path for item in val.items)

    mix = build_mix(from_val + fresh, base, feedback_fraction=0.5, eval_hashes=eval_hashes, seed=1)

    assert mix.counts == MixCounts(feedback=8, base=8, feedback_in_eval_dropped=3)
    feedback_paths = {i.image_path for i in mix.items if i.source == "feedback"}
    assert feedback_paths == {r.image_path for r in fresh}
    base_paths = [i.image_path for i in mix.items if i.source == "base"]
    assert len(set(base_paths)) == 8 and set(base_paths) <= {i.path for i in base.items}
    again = build_mix(from_val + fresh, base, feedback_fraction=0.5, eval_hashes=eval_hashes, seed=1)
    assert [i.image_path for i in again.items] == [i.image_path for i in mix.items]  # seeded

    write_coco_split(mix.items, tmp_path / "mix")
    loaded = load_split(tmp_path / "mix", "train")
    assert len(loaded) == 16
    by_hash = {file_sha256(i.path): i.captions for i in loaded.items}
    for row in fresh:
        assert by_hash[row.image_sha256] == (row.caption,)
    for item in base.items:
        if item.path in base_paths:
            assert by_hash[file_sha256(item.path)] == item.captions  # all base references kept


def test_mix_without_base_is_feedback_only(tmp_path, synthetic_dataset):
    test = load_split(synthetic_dataset.out_dir, "test")
    rows = [_blob_copy(item.path, tmp_path / "blobs") for item in test.items[:4]]
    mix = build_mix(rows, None, feedback_fraction=0.5)
    assert mix.counts.feedback == 4 and mix.counts.base == 0
    assert {i.source for i in mix.items} == {"feedback"}


def test_feedback_repeats_keep_the_fraction_with_more_base_images(tmp_path, synthetic_dataset):
    base = load_split(synthetic_dataset.out_dir, "train")
    test = load_split(synthetic_dataset.out_dir, "test")
    rows = [_blob_copy(item.path, tmp_path / "blobs") for item in test.items[:5]]
    mix = build_mix(rows, base, feedback_fraction=0.5, feedback_repeats=3)
    sources = [i.source for i in mix.items]
    assert sources.count("feedback") == 15 and sources.count("base") == 15
    assert len({i.image_path for i in mix.items if i.source == "base"}) == 15
    assert mix.counts.feedback == 5 and mix.counts.base == 15
    with pytest.raises(ValueError):
        build_mix(rows, base, feedback_fraction=0.5, feedback_repeats=0)


def test_a_base_set_too_small_for_the_fraction_is_logged(tmp_path, synthetic_dataset, caplog):
    base = load_split(synthetic_dataset.out_dir, "train")  # 40 images
    test = load_split(synthetic_dataset.out_dir, "test")
    rows = [_blob_copy(item.path, tmp_path / "blobs") for item in test.items[:10]]

    def warnings():
        return [r for r in caplog.records if r.name == "training.data.mix" and r.levelname == "WARNING"]

    build_mix(rows, base, feedback_fraction=0.25)  # 30 base images wanted, 40 there
    assert warnings() == []
    mix = build_mix(rows, base, feedback_fraction=0.2)  # 40 wanted: just enough
    assert warnings() == [] and mix.counts.base == 40
    mix = build_mix(rows, base, feedback_fraction=0.1)  # 90 wanted, 40 there: feedback is 20% of the mix
    (record,) = warnings()
    assert record.getMessage() == "base set too small for the requested feedback fraction"
    assert record.feedback_share == 0.2 and mix.counts.base == 40


def test_agreeing_users_raise_an_images_weight_up_to_the_cap(tmp_path, synthetic_dataset):
    from dataclasses import replace

    base = load_split(synthetic_dataset.out_dir, "train")
    test = load_split(synthetic_dataset.out_dir, "test")
    one, two, five = (_blob_copy(item.path, tmp_path / "blobs") for item in test.items[:3])
    rows = [replace(one, supporters=("slack:u1",)), replace(two, supporters=("slack:u1", "slack:u2")),
            replace(five, supporters=tuple(f"slack:u{n}" for n in range(5)))]
    mix = build_mix(rows, base, feedback_fraction=0.5, feedback_repeats=2, agreement_cap=3)
    listed = [i.image_path for i in mix.items if i.source == "feedback"]
    assert [listed.count(r.image_path) for r in rows] == [2, 4, 6]  # repeats x min(supporters, cap)
    assert mix.counts.feedback == 3 and mix.counts.base == 12  # the feedback share stays at half
    assert build_mix(rows, base, feedback_fraction=0.5).counts.base == 3  # the cap defaults to 1: no weighting
