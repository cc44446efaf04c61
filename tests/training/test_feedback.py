"""Feedback rows in training: a stable held-out split, and a `datasets.Dataset`."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from storage.feedback import FeedbackRow
from training.data.feedback import is_held_out, split_feedback, to_dataset


def _rows(n: int) -> list[FeedbackRow]:
    return [FeedbackRow(hashlib.sha256(str(i).encode()).hexdigest(), Path(f"/b/{i}"), f"caption {i}") for i in range(n)]


def test_held_out_split_depends_only_on_the_image_hash():
    rows = _rows(400)
    train, held = split_feedback(rows, 0.25)
    assert len(train) + len(held) == 400 and 60 < len(held) < 140
    # The same image lands on the same side whatever else is in the batch, in any order.
    _, held_subset = split_feedback(list(reversed(rows[:100])), 0.25)
    assert {r.image_sha256 for r in held_subset} == {r.image_sha256 for r in held if r in rows[:100]}
    assert all(is_held_out(r.image_sha256, 0.25) for r in held)
    assert split_feedback(rows, 0.0)[1] == [] and split_feedback(rows, 1.0)[0] == []


def test_small_batches_still_hold_out_a_minimum_by_hash_order():
    rows = _rows(10)
    train, held = split_feedback(rows, 0.01, min_held_out=4)
    assert len(held) == 4 and len(train) == 6
    _, held_again = split_feedback(list(reversed(rows)), 0.01, min_held_out=4)
    assert {r.image_sha256 for r in held_again} == {r.image_sha256 for r in held}
    assert len(split_feedback(rows[:5], 0.01, min_held_out=4)[1]) == 2  # training keeps at least half


def test_to_dataset_has_images_and_captions(tmp_path):
    path = tmp_path / "img"
    Image.new("RGB", (8, 6), (200, 10, 10)).save(path, format="PNG")
    row = FeedbackRow("d" * 64, path, "a red square", model_caption="a red box", platform="slack", user_id="U1",
                      correction_id=7, created_at=datetime(2026, 5, 1, tzinfo=timezone.utc))
    ds = to_dataset([row])
    assert ds.num_rows == 1 and ds[0]["caption"] == "a red square" and ds[0]["image_sha256"] == "d" * 64
    assert ds[0]["image"].size == (8, 6) and ds[0]["model_caption"] == "a red box"
    assert ds[0]["created_at"].startswith("2026-05-01")
    ds.save_to_disk(str(tmp_path / "ds"))
    from datasets import load_from_disk

    assert load_from_disk(str(tmp_path / "ds"))[0]["caption"] == "a red square"


def test_training_reads_the_feedback_export_format(tmp_path):
    from storage.feedback_file import write_feedback_file
    from training.train import read_jsonl_pairs

    rows = []
    for n, colour in enumerate(("red", "blue")):
        path = tmp_path / "blobs" / f"{n}.png"
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (8, 8), colour).save(path)
        rows.append(FeedbackRow(str(n) * 64, path, f"a {colour} square", model_caption="a square",
                                platform="slack", user_id=f"U{n}", correction_id=n,
                                created_at=datetime(2026, 5, 1, tzinfo=timezone.utc)))
    write_feedback_file(rows, tmp_path / "feedback.jsonl", "jsonl")
    assert read_jsonl_pairs(tmp_path / "feedback.jsonl") == [(row.image_path, row.caption) for row in rows]
