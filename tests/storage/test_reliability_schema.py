"""Ids past 32 bits and "one accepted correction per user and image", held by the database itself on both
stores: a migration that carries a populated database over, ids that fit no column answered as unknown,
and simultaneous corrections of one image by one user leaving exactly one accepted."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, inspect, insert, select, text
from sqlalchemy.exc import IntegrityError

from storage import captions, corrections, db
from storage.errors import CorrectionRefused
from storage.models import Base, Caption, Correction
from tests.storage.helpers import make_caption

PAST_32_BITS = 2**31 + 5
OUT_OF_RANGE_IDS = (2**63, 10**40, -(2**63) - 1)
PREVIOUS_REVISION = "0003"  # the schema before 64-bit ids and the one-accepted index


def _advance_ids(engine, table: str, past: int) -> None:
    """Make the next id `table` hands out larger than `past`, as a long-lived database would."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {past})"))
            return
        # SQLite's INTEGER PRIMARY KEY hands out the largest id + 1: give the newest row id `past` (a copy of
        # it for captions, which corrections refer to).
        newest = f"(SELECT max(id) FROM {table})"
        if table == "corrections":
            connection.execute(text(f"UPDATE corrections SET id = {past} WHERE id = {newest}"))
            return
        columns = ", ".join(c.name for c in Base.metadata.tables[table].columns if c.name != "id")
        connection.execute(text(f"INSERT INTO {table} (id, {columns}) SELECT {past}, {columns} FROM {table} "
                                f"WHERE id = {newest}"))


def test_ids_past_32_bits_are_handed_out_and_read_back(engine, blobs):
    with db.session_scope(engine) as session:
        make_caption(session, blobs)
    _advance_ids(engine, "captions", PAST_32_BITS)
    with db.session_scope(engine) as session:
        caption = make_caption(session, blobs, data=b"second image")
        assert caption.id > PAST_32_BITS
        corrections.record_correction(session, caption_id=caption.id, user_id="U9", text="a cat on a mat")
    _advance_ids(engine, "corrections", PAST_32_BITS)
    with db.session_scope(engine) as session:
        again = corrections.record_correction(session, caption_id=caption.id, user_id="U9", text="a cat on a rug")
        assert again.id > PAST_32_BITS and again.caption_id == caption.id
        assert captions.get_caption(session, caption.id).text == "a dog on a beach"
        assert [c.status for c in corrections.corrections_for_caption(session, caption.id)] == ["overridden", "accepted"]


@pytest.mark.parametrize("caption_id", OUT_OF_RANGE_IDS)
def test_ids_no_column_can_hold_are_unknown_not_a_crash(engine, blobs, caption_id):
    with db.session_scope(engine) as session:
        assert captions.get_caption(session, caption_id) is None
        assert corrections.get_correction(session, caption_id) is None
        assert corrections.corrections_for_caption(session, caption_id) == []
        with pytest.raises(CorrectionRefused) as refused:
            corrections.record_correction(session, caption_id=caption_id, user_id="U1", text="a cat on a mat")
    assert refused.value.reason == "unknown_caption"


def test_the_database_refuses_a_second_accepted_correction_of_one_image_by_one_user(engine, blobs):
    with db.session_scope(engine) as session:
        caption = make_caption(session, blobs)
        corrections.record_correction(session, caption_id=caption.id, user_id="U1", text="a cat on a mat")
    row = {"caption_id": caption.id, "image_sha256": caption.image_sha256, "platform": "slack", "user_id": "U1",
           "text": "a cat on a rug", "status": "accepted", "created_at": datetime.now(timezone.utc)}
    with pytest.raises(IntegrityError):
        with db.session_scope(engine) as session:
            session.execute(insert(Correction).values(**row))
    with db.session_scope(engine) as session:  # another user, or the same user's overridden rows, are fine
        session.execute(insert(Correction).values(**{**row, "user_id": "U2"}))
        session.execute(insert(Correction).values(**{**row, "status": "overridden"}))


ROUNDS = 6
THREADS = 4


def test_simultaneous_corrections_by_one_user_leave_one_accepted(engine, blobs):
    """Four threads correct one image as one user at the same moment, six times over (the load run saw
    2-3 accepted on Postgres): every round ends with exactly one accepted correction, the last one stored."""
    with db.session_scope(engine) as session:
        caption_ids = [make_caption(session, blobs, data=f"image {n}".encode()).id for n in range(ROUNDS)]
    errors: list[BaseException] = []

    def correct(caption_id: int, n: int, barrier: threading.Barrier) -> None:
        try:
            barrier.wait()
            with db.session_scope(engine) as session:
                corrections.record_correction(session, caption_id=caption_id, user_id="U1",
                                              text=f"a brown dog, take {n}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    for caption_id in caption_ids:
        barrier = threading.Barrier(THREADS)
        threads = [threading.Thread(target=correct, args=(caption_id, n, barrier)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    with db.session_scope(engine) as session:
        for caption_id in caption_ids:
            rows = corrections.corrections_for_caption(session, caption_id)
            assert len(rows) == THREADS
            accepted = [r for r in rows if r.status == "accepted"]
            assert len(accepted) == 1, rows
            assert accepted[0].id == max(r.id for r in rows)  # the newest wins, as for one user in sequence


# --- the migration, on a populated database ---


def _populate_previous_schema(url: str) -> None:
    """Rows as revision 0003 stored them, including what the old code let through on Postgres: two
    accepted corrections of one image by one user."""
    engine = db.create_engine_for(url)
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO images (sha256, size_bytes, format, width, height, first_seen_at) "
                "VALUES (:sha, 10, 'png', 4, 3, :now)"), {"sha": "a" * 64, "now": now})
            for n in (1, 2):
                connection.execute(text(
                    "INSERT INTO captions (image_sha256, model_version, text, options, platform, user_id, "
                    "created_at, alternatives) VALUES (:sha, 'base', :text, '{}', 'web', 'ip:1', :now, '[]')"),
                    {"sha": "a" * 64, "text": f"caption {n}", "now": now})
            for n, (caption, user) in enumerate([(1, "ip:1"), (2, "ip:1"), (1, "ip:2"), (2, "ip:1")]):
                connection.execute(text(
                    "INSERT INTO corrections (caption_id, image_sha256, platform, user_id, text, status, created_at) "
                    "VALUES (:caption, :sha, 'web', :user, :text, 'accepted', :now)"),
                    {"caption": caption, "sha": "a" * 64, "user": user, "text": f"correction {n}", "now": now})
    finally:
        engine.dispose()


def test_migration_carries_a_populated_database_to_64_bit_ids_and_one_accepted(database_url, tmp_path):
    db.upgrade(database_url, PREVIOUS_REVISION)
    _populate_previous_schema(database_url)
    assert db.upgrade(database_url) == db.head_revision()
    engine = db.create_engine_for(database_url)
    try:
        with db.session_scope(engine) as session:
            assert [c.text for c in session.scalars(select(Caption).order_by(Caption.id))] == ["caption 1", "caption 2"]
            rows = {r.text: (r.user_id, r.status) for r in session.scalars(select(Correction))}
        # ip:1 held three accepted corrections of the image; the newest stays accepted, ip:2's is untouched.
        assert rows == {"correction 0": ("ip:1", "overridden"), "correction 1": ("ip:1", "overridden"),
                        "correction 2": ("ip:2", "accepted"), "correction 3": ("ip:1", "accepted")}
        if engine.dialect.name == "postgresql":
            columns = {(t, c["name"]): str(c["type"]) for t in ("captions", "corrections", "training_runs",
                                                                 "model_activations")
                       for c in inspect(engine).get_columns(t)}
            assert {k: v for k, v in columns.items() if k[1] in ("id", "caption_id")} == {
                ("captions", "id"): "BIGINT", ("corrections", "id"): "BIGINT",
                ("corrections", "caption_id"): "BIGINT", ("training_runs", "id"): "BIGINT",
                ("model_activations", "id"): "BIGINT"}
        _advance_ids(engine, "captions", PAST_32_BITS)
        with db.session_scope(engine) as session:
            sha = session.scalar(select(Caption.image_sha256).limit(1))
            caption = captions.record_caption(session, image_sha256=sha, text="a third caption", model_version="base",
                                              platform="web", user_id="ip:3")
            corrections.record_correction(session, caption_id=caption.id, user_id="ip:3", text="a red square")
        assert caption.id > PAST_32_BITS
        with db.session_scope(engine) as session:
            assert captions.get_caption(session, caption.id).text == "a third caption"
            assert session.scalar(select(func.count()).select_from(Correction)) == 5
        # And back: the downgrade drops the index and narrows the columns again (ids past 32 bits go first).
        with db.session_scope(engine) as session:
            session.execute(text(f"DELETE FROM captions WHERE id > {2**31 - 1}"))
    finally:
        engine.dispose()
    assert db.downgrade(database_url, PREVIOUS_REVISION) == PREVIOUS_REVISION
