"""Captions keep their confidence and alternatives (revision 0003), one correction per user and image, and the
feedback export counts the distinct users behind each image."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import inspect, text

from storage import captions, corrections, db, feedback
from storage.db import session_scope
from storage.errors import InvalidArgument
from tests.storage.helpers import make_caption


def _columns(url: str) -> set[str]:
    engine = db.create_engine_for(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns("captions")}
    finally:
        engine.dispose()


def test_revision_0003_adds_and_removes_the_columns_keeping_rows(database_url):
    db.upgrade(database_url, "0002")
    engine = db.create_engine_for(database_url)
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO images (sha256, size_bytes, format, width, height, first_seen_at) "
                "VALUES (:sha, 3, 'png', 1, 1, :now)"), {"sha": "a" * 64, "now": now})
            connection.execute(text(
                "INSERT INTO captions (image_sha256, model_version, text, options, platform, created_at) "
                "VALUES (:sha, 'base', 'a dog', '{}', 'slack', :now)"), {"sha": "a" * 64, "now": now})
        assert db.upgrade(database_url, "0003") == "0003"
        assert {"confidence", "alternatives"} <= _columns(database_url)
        with session_scope(engine) as session:
            [old] = captions.captions_for_image(session, "a" * 64)
        assert (old.text, old.confidence, old.alternatives) == ("a dog", None, ())
        assert db.downgrade(database_url, "0002") == "0002"
        assert not {"confidence", "alternatives"} & _columns(database_url)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT text FROM captions")).scalars().all() == ["a dog"]
    finally:
        engine.dispose()


def test_confidence_and_alternatives_are_stored_with_the_caption(session, blobs):
    made = make_caption(session, blobs, confidence=0.42, alternatives=("a puppy on sand", "a dog at the sea"))
    again = captions.get_caption(session, made.id)
    assert again.confidence == pytest.approx(0.42)
    assert again.alternatives == ("a puppy on sand", "a dog at the sea")
    assert make_caption(session, blobs, data=b"other").alternatives == ()
    with pytest.raises(InvalidArgument) as refused:
        make_caption(session, blobs, data=b"third", confidence=1.5)
    assert refused.value.reason == "bad_confidence"


def test_one_accepted_correction_per_user_and_image(session, blobs):
    first = make_caption(session, blobs, data=b"cat", text="a cat")
    second = make_caption(session, blobs, data=b"cat", text="a kitten", user_id="U1")  # the same image again
    corrections.record_correction(session, caption_id=first.id, user_id="web-1", text="a grey cat", platform="web")
    corrections.record_correction(session, caption_id=second.id, user_id="web-1", text="a grey cat on a mat",
                                  platform="web")
    corrections.record_correction(session, caption_id=second.id, user_id="web-2", text="a small cat", platform="web")
    statuses = {(c.user_id, c.text): c.status for c in corrections.corrections_for_caption(session, first.id)
                + corrections.corrections_for_caption(session, second.id)}
    assert statuses == {("web-1", "a grey cat"): "overridden", ("web-1", "a grey cat on a mat"): "accepted",
                        ("web-2", "a small cat"): "accepted"}


def test_feedback_export_counts_distinct_users_per_image(session, blobs):
    cat = make_caption(session, blobs, data=b"cat", text="a cat")
    dog = make_caption(session, blobs, data=b"dog", text="a dog")
    for n in range(5):  # one user, five corrections of the same image
        corrections.record_correction(session, caption_id=cat.id, user_id="ip:one", text=f"a tabby cat {n}",
                                      platform="web")
    corrections.record_correction(session, caption_id=dog.id, user_id="ip:one", text="a brown dog", platform="web")
    corrections.record_correction(session, caption_id=dog.id, user_id="U7", text="a brown puppy", platform="slack")
    rows = {r.image_sha256: (r.caption, r.users) for r in feedback.export_feedback(session, blobs)}
    assert rows == {cat.image_sha256: ("a tabby cat 4", 1), dog.image_sha256: ("a brown puppy", 2)}
