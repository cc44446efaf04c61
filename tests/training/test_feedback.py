"""Feedback rows: normalising the storage export, a stable held-out split, a `datasets.Dataset`."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from training.data.feedback import FeedbackRow, feedback_rows, is_held_out, split_feedback, to_dataset


def _rows(n: int) -> list[FeedbackRow]:
    return [FeedbackRow(hashlib.sha256(str(i).encode()).hexdigest(), Path(f"/b/{i}"), f"caption {i}") for i in range(n)]


def test_feedback_rows_accepts_objects_and_dicts_and_drops_blank_captions():
    when = datetime(2026, 1, 2, tzinfo=timezone.utc)

    class Exported:
        image_sha256, image_path, caption, created_at = "a" * 64, "/blobs/aa", "  a  red\nball ", when
        model_caption = "a red  circle"

    rows = feedback_rows([Exported(), {"sha256": "b" * 64, "path": "/blobs/bb", "text": "a cat"}, {"sha256": "c" * 64, "path": "/x", "text": "  "}])
    assert rows == [
        FeedbackRow("a" * 64, Path("/blobs/aa"), "a red ball", when, model_caption="a red circle"),
        FeedbackRow("b" * 64, Path("/blobs/bb"), "a cat", None, model_caption=""),
    ]


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
    row = FeedbackRow("d" * 64, path, "a red square", datetime(2026, 5, 1, tzinfo=timezone.utc), "a red box")
    ds = to_dataset([row])
    assert ds.num_rows == 1 and ds[0]["caption"] == "a red square" and ds[0]["image_sha256"] == "d" * 64
    assert ds[0]["image"].size == (8, 6) and ds[0]["model_caption"] == "a red box"
    assert ds[0]["corrected_at"].startswith("2026-05-01")
    ds.save_to_disk(str(tmp_path / "ds"))
    from datasets import load_from_disk

    assert load_from_disk(str(tmp_path / "ds"))[0]["caption"] == "a red square"
