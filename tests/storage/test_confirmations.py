"""Confirmations ("this caption is right") are stored as feedback: one answer per user and image, exported for
retraining, and used by the review queue (both backends); revision 0005 adds their kind."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, text

from storage import corrections, db, feedback
from storage.confirmations import record_confirmation
from storage.db import session_scope
from storage.errors import CorrectionRefused
from storage.queue import review_queue
from tests.storage.helpers import make_caption

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_a_confirmation_is_the_users_answer_about_the_image(session, blobs):
    cat = make_caption(session, blobs, data=b"cat", text="a cat on a sofa")
    confirmed = record_confirmation(session, caption_id=cat.id, user_id="U2", now=T0)
    assert (confirmed.kind, confirmed.text, confirmed.status, confirmed.platform) == (
        "confirmation", "a cat on a sofa", "accepted", "slack")
    # Confirming again changes nothing.
    assert record_confirmation(session, caption_id=cat.id, user_id="U2", now=T0 + timedelta(minutes=1)) == confirmed
    # A correction later overrides it, and a confirmation after that overrides the correction.
    fixed = corrections.record_correction(session, caption_id=cat.id, user_id="U2", text="a cat on a bed",
                                          now=T0 + timedelta(minutes=2))
    again = record_confirmation(session, caption_id=cat.id, user_id="U2", now=T0 + timedelta(minutes=3))
    stored = {c.id: (c.kind, c.status) for c in corrections.corrections_for_caption(session, cat.id)}
    assert stored == {confirmed.id: ("confirmation", "overridden"), fixed.id: ("correction", "overridden"),
                      again.id: ("confirmation", "accepted")}


def test_a_confirmation_needs_a_caption_and_a_user(session, blobs):
    cat = make_caption(session, blobs, data=b"cat")
    with pytest.raises(CorrectionRefused) as unknown:
        record_confirmation(session, caption_id=cat.id + 100, user_id="U2")
    assert unknown.value.reason == "unknown_caption"
    with pytest.raises(CorrectionRefused) as nobody:
        record_confirmation(session, caption_id=cat.id, user_id="")
    assert nobody.value.reason == "unknown_user"


def test_confirmed_captions_are_exported_for_retraining(session, blobs):
    cat = make_caption(session, blobs, data=b"cat", text="a cat on a sofa")
    dog = make_caption(session, blobs, data=b"dog", text="a dog")
    record_confirmation(session, caption_id=cat.id, user_id="U2", now=T0)
    corrections.record_correction(session, caption_id=dog.id, user_id="U2", text="a brown dog", now=T0)
    rows = feedback.export_corrections(session, blobs)
    assert [(r.image_sha256, r.caption, r.model_caption) for r in rows] == [
        (cat.image_sha256, "a cat on a sofa", "a cat on a sofa"), (dog.image_sha256, "a brown dog", "a dog")]
    assert feedback.count_feedback(session) == 2


def test_the_queue_ranks_a_confirmed_caption_lower_and_shows_disputes_apart(session, blobs):
    plain = make_caption(session, blobs, data=b"plain", text="a red circle", confidence=0.4, now=T0)
    confirmed = make_caption(session, blobs, data=b"confirmed", text="a red square", confidence=0.4, now=T0)
    disputed = make_caption(session, blobs, data=b"disputed", text="a blue star", confidence=0.4, now=T0)
    record_confirmation(session, caption_id=confirmed.id, user_id="U2", now=T0)
    record_confirmation(session, caption_id=disputed.id, user_id="U2", now=T0)
    corrections.record_correction(session, caption_id=disputed.id, user_id="U3", text="a blue flower", now=T0)

    queue = {item.caption_id: item for item in review_queue(session, blobs, limit=10)}

    assert queue[confirmed.id].uncertainty == pytest.approx(0.6 / 2)  # one confirmation halves it
    assert queue[confirmed.id].score < queue[plain.id].score
    assert (queue[confirmed.id].confirmations, queue[confirmed.id].corrections) == (1, ())
    assert queue[disputed.id].disagreement == pytest.approx(1 / 3)  # the caption twice, the correction once
    assert queue[disputed.id].corrections == ("a blue flower",) and queue[disputed.id].users == 2


def _kinds(url: str) -> list[str]:
    engine = db.create_engine_for(url)
    try:
        if "kind" not in {c["name"] for c in inspect(engine).get_columns("corrections")}:
            return []
        with engine.connect() as connection:
            return connection.execute(text("SELECT kind FROM corrections ORDER BY id")).scalars().all()
    finally:
        engine.dispose()


def test_the_migration_marks_old_rows_as_corrections_and_downgrades_without_confirmations(database_url, blobs):
    db.upgrade(database_url, "0004")  # the revision before confirmations
    engine = db.create_engine_for(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO images (sha256, size_bytes, format, width, height, first_seen_at) "
                "VALUES (:sha, 3, 'png', 1, 1, :now)"), {"sha": "a" * 64, "now": T0})
            caption_id = connection.execute(text(
                "INSERT INTO captions (image_sha256, model_version, text, options, platform, created_at) "
                "VALUES (:sha, 'base', 'a dog', '{}', 'slack', :now) RETURNING id"), {"sha": "a" * 64, "now": T0}).scalar()
            connection.execute(text(
                "INSERT INTO corrections (caption_id, image_sha256, platform, user_id, text, status, created_at) "
                "VALUES (:c, :sha, 'slack', 'U2', 'a brown dog', 'accepted', :now)"),
                {"c": caption_id, "sha": "a" * 64, "now": T0})
        assert db.upgrade(database_url, "0005") == "0005"
        assert _kinds(database_url) == ["correction"]
        with session_scope(engine) as session:
            record_confirmation(session, caption_id=caption_id, user_id="U3", now=T0)
        assert _kinds(database_url) == ["correction", "confirmation"]
        assert db.downgrade(database_url, "0004") == "0004"
        assert _kinds(database_url) == []
        with engine.connect() as connection:
            assert connection.execute(text("SELECT text FROM corrections")).scalars().all() == ["a brown dog"]
    finally:
        engine.dispose()
