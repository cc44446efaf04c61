"""The feedback file format: written by the export, read back by training, one definition for both."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone

import pytest

from storage.feedback import FeedbackRow
from storage.feedback_file import (
    FIELDS,
    FeedbackFileError,
    read_feedback_jsonl,
    write_feedback_file,
)

WHEN = datetime(2026, 3, 1, 12, 30, tzinfo=timezone.utc)


def _rows(tmp_path) -> list[FeedbackRow]:
    return [
        FeedbackRow("a" * 64, tmp_path / "blobs" / "aa", "a brown dog, \"quoted\" é", model_caption="a dog",
                    platform="slack", user_id="U2", correction_id=3, created_at=WHEN),
        FeedbackRow("b" * 64, tmp_path / "blobs" / "bb", "a tabby cat", model_caption="a cat",
                    platform="discord", user_id="42", correction_id=9, created_at=WHEN, users=3),
    ]


def test_jsonl_round_trips_every_field(tmp_path):
    rows = _rows(tmp_path)
    out = tmp_path / "out" / "feedback.jsonl"
    assert write_feedback_file(rows, out, "jsonl") == 2
    assert [list(json.loads(line)) for line in out.read_text(encoding="utf-8").splitlines()] == [list(FIELDS)] * 2
    assert read_feedback_jsonl(out) == rows
    assert not list(out.parent.glob(".*.part"))  # written atomically: no temporary file left


def test_csv_has_the_same_fields(tmp_path):
    out = tmp_path / "feedback.csv"
    write_feedback_file(_rows(tmp_path), out, "csv")
    with open(out, newline="", encoding="utf-8") as handle:
        records = list(csv.DictReader(handle))
    assert tuple(records[0]) == FIELDS
    assert [(r["caption"], r["platform"], r["user_id"], r["created_at"]) for r in records] == [
        ('a brown dog, "quoted" é', "slack", "U2", WHEN.isoformat()), ("a tabby cat", "discord", "42", WHEN.isoformat())]


def test_hand_made_records_need_only_an_image_and_a_caption(tmp_path):
    (tmp_path / "rows.jsonl").write_text(json.dumps({"image_path": "imgs/a.png", "caption": "a red ball"}) + "\n\n")
    (row,) = read_feedback_jsonl(tmp_path / "rows.jsonl")
    assert row == FeedbackRow("", tmp_path / "imgs" / "a.png", "a red ball")  # relative to the file


@pytest.mark.parametrize(("line", "message"), [
    ("not json", "rows.jsonl:2: not JSON"),
    ('["a list"]', "rows.jsonl:2: expected a JSON object, got list"),
    ('{"image_path": "a.png"}', "rows.jsonl:2: a feedback record needs caption"),
    ('{"image_path": "a.png", "caption": "x", "created_at": "yesterday"}', "rows.jsonl:2: Invalid isoformat"),
])
def test_a_bad_line_is_a_user_error_naming_it(tmp_path, line, message):
    good = json.dumps({"image_path": "a.png", "caption": "fine"})
    (tmp_path / "rows.jsonl").write_text(f"{good}\n{line}\n")
    with pytest.raises(FeedbackFileError, match=message) as info:
        read_feedback_jsonl(tmp_path / "rows.jsonl")
    assert info.value.reason == "bad_feedback_file"


def test_an_unknown_format_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(FeedbackFileError) as info:
        write_feedback_file(_rows(tmp_path), tmp_path / "f.xml", "xml")
    assert info.value.reason == "bad_format" and not (tmp_path / "f.xml").exists()

