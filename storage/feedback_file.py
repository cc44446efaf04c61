"""The feedback file format: what `capbot feedback export` writes and training reads back.

One record per `storage.feedback.FeedbackRow`, with the fields in `FIELDS`: JSONL (one JSON object per
line) or CSV (a header row, then one row per record). `created_at` is ISO 8601 with its zone;
`platform` + `user_id` name who made the correction (retraining counts distinct users before it
accepts a rename), `users` how many distinct users corrected that image, and `supporters` the users
("platform:user_id", separated by spaces: Slack, Discord and web ids never contain one) whose corrections agree with
this caption. Reading needs `image_path` and `caption`; the other fields may be left out (in
hand-made files; an absent `image_sha256` reads as ""). A relative `image_path` is resolved against the
file's directory.

This module is the only place that knows the field names: the export command writes through
`write_feedback_file`, and `training.train.read_jsonl_pairs` reads through `jsonl_objects` and
`feedback_row`.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from storage.errors import UserError
from storage.feedback import FeedbackRow

FIELDS = ("image_sha256", "image_path", "caption", "model_caption", "platform", "user_id", "correction_id",
          "created_at", "users", "supporters")
REQUIRED = ("image_path", "caption")
FORMATS = ("jsonl", "csv")


class FeedbackFileError(UserError):
    """A feedback file that cannot be read: not JSON, or a record without a required field."""


def feedback_record(row: FeedbackRow) -> dict[str, Any]:
    """The row as a record of `FIELDS` (JSON-ready; absent values are empty strings)."""
    return {
        "image_sha256": row.image_sha256,
        "image_path": str(row.image_path),
        "caption": row.caption,
        "model_caption": row.model_caption,
        "platform": row.platform,
        "user_id": row.user_id,
        "correction_id": "" if row.correction_id is None else row.correction_id,
        "created_at": row.created_at.isoformat() if row.created_at else "",
        "users": row.users,
        "supporters": " ".join(row.supporters),
    }


def feedback_row(record: Mapping[str, Any], *, base_dir: Path, where: str = "record") -> FeedbackRow:
    """A record read from a file back as a `FeedbackRow`; `where` ("file:line") goes into error messages."""
    missing = [name for name in REQUIRED if not str(record.get(name) or "").strip()]
    if missing:
        raise FeedbackFileError(f"{where}: a feedback record needs {', '.join(missing)}", reason="bad_feedback_file")
    try:
        correction_id = int(record["correction_id"]) if record.get("correction_id") not in (None, "") else None
        created_at = datetime.fromisoformat(record["created_at"]) if record.get("created_at") else None
        users = int(record["users"]) if record.get("users") not in (None, "") else 1
    except (TypeError, ValueError) as exc:
        raise FeedbackFileError(f"{where}: {exc}", reason="bad_feedback_file") from exc
    return FeedbackRow(
        image_sha256=str(record.get("image_sha256") or ""),
        image_path=base_dir / str(record["image_path"]),  # an absolute path stays as it is
        caption=str(record["caption"]),
        model_caption=str(record.get("model_caption") or ""),
        platform=str(record.get("platform") or ""),
        user_id=str(record.get("user_id") or ""),
        correction_id=correction_id,
        created_at=created_at,
        users=users,
        supporters=tuple(str(record.get("supporters") or "").split()),
    )


def jsonl_objects(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """("file:line", object) for each non-blank line of a JSONL file; a line that is not a JSON object is
    a `FeedbackFileError` naming it."""
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise FeedbackFileError(f"{where}: not JSON ({exc})", reason="bad_feedback_file") from exc
        if not isinstance(obj, dict):
            raise FeedbackFileError(f"{where}: expected a JSON object, got {type(obj).__name__}",
                                    reason="bad_feedback_file")
        yield where, obj


def read_feedback_jsonl(path: str | Path) -> list[FeedbackRow]:
    """Every record of a JSONL feedback file, in order."""
    file = Path(path)
    return [feedback_row(obj, base_dir=file.parent, where=where) for where, obj in jsonl_objects(file)]


def write_feedback_file(rows: Iterable[FeedbackRow], out: Path, fmt: str) -> int:
    """Write `rows` to `out` as `fmt` (jsonl or csv), atomically: a reader never sees half a file.
    Returns how many rows were written."""
    if fmt not in FORMATS:
        raise FeedbackFileError(f"unknown feedback file format {fmt!r}; use one of {', '.join(FORMATS)}",
                                reason="bad_format")
    records = [feedback_record(row) for row in rows]
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            if fmt == "csv":
                writer = csv.DictWriter(handle, fieldnames=FIELDS)
                writer.writeheader()
                writer.writerows(records)
            else:
                handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(records)
