"""Model registry (one active version, atomic promote and rollback) and training runs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError

from storage import db, registry, runs
from storage.db import session_scope
from storage.errors import InvalidArgument, NothingToRollBack, VersionExists, VersionNotFound
from storage.models import ModelVersion

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _register(session, *ids):
    for n, version_id in enumerate(ids):
        registry.register_version(session, version_id=version_id, location=f"/models/{version_id}",
                                  metrics={"cider": n / 10}, now=T0 + timedelta(minutes=n))


def _statuses(session) -> dict[str, str]:
    return {v.id: v.status for v in registry.list_versions(session)}


def test_register_list_get(session):
    _register(session, "v1", "v2")
    assert [v.id for v in registry.list_versions(session)] == ["v2", "v1"]
    v1 = registry.get_version(session, "v1")
    assert (v1.location, v1.status, v1.metrics) == ("/models/v1", "candidate", {"cider": 0.0})
    assert registry.get_active(session) is None
    with pytest.raises(VersionExists):
        registry.register_version(session, version_id="v1", location="/elsewhere")
    with pytest.raises(InvalidArgument):
        registry.register_version(session, version_id="v3", location="/m", status="active")
    assert registry.update_metrics(session, "v1", {"bleu4": 0.2}).metrics == {"cider": 0.0, "bleu4": 0.2}


def test_promote_keeps_exactly_one_active(session):
    _register(session, "v1", "v2")
    assert registry.promote(session, "v1").status == "active"
    assert registry.promote(session, "v2").status == "active"
    assert _statuses(session) == {"v1": "retired", "v2": "active"}
    assert registry.get_active(session).id == "v2"
    assert registry.promote(session, "v2").status == "active"  # no-op
    with pytest.raises(VersionNotFound):
        registry.promote(session, "nope")
    assert registry.get_active(session).id == "v2"


def test_rollback_walks_back_through_history(session):
    _register(session, "v1", "v2", "v3")
    with pytest.raises(NothingToRollBack):
        registry.rollback(session)
    for version_id in ("v1", "v2", "v3"):
        registry.promote(session, version_id)
    assert registry.rollback(session).id == "v2"
    assert registry.get_version(session, "v3").rolled_back_at is not None
    assert registry.rollback(session).id == "v1"
    with pytest.raises(NothingToRollBack):
        registry.rollback(session)
    assert _statuses(session) == {"v1": "active", "v2": "retired", "v3": "retired"}
    registry.promote(session, "v3")  # promoting again clears the rolled-back mark
    assert registry.rollback(session).id == "v1"


def test_database_refuses_a_second_active_version(engine):
    with session_scope(engine) as session:
        _register(session, "v1", "v2")
        registry.promote(session, "v1")
    with pytest.raises(IntegrityError):
        with session_scope(engine) as session:
            session.execute(update(ModelVersion).where(ModelVersion.id == "v2").values(status="active"))


def test_failed_promote_changes_nothing(engine):
    with session_scope(engine) as session:
        _register(session, "v1", "v2")
        registry.promote(session, "v1")
    with pytest.raises(RuntimeError):
        with session_scope(engine) as session:
            registry.promote(session, "v2")
            raise RuntimeError("crash between demote and commit")
    with session_scope(engine) as session:
        assert _statuses(session) == {"v1": "active", "v2": "candidate"}


def test_run_lifecycle_and_last_promoted(session):
    assert runs.last_promoted_run(session) is None
    first = runs.start_run(session, base_version="base", data_counts={"coco": 100}, now=T0)
    assert first.status == "running"
    runs.finish_run(session, first.id, status="promoted", result_version="v1", metrics={"cider": 0.5},
                    data_counts={"feedback": 20}, now=T0 + timedelta(hours=1))
    second = runs.start_run(session, base_version="v1", feedback_since=T0, now=T0 + timedelta(days=1))
    done = runs.finish_run(session, second.id, status="not_promoted", reason="CIDEr dropped 0.1 on the base set")
    assert (done.status, done.reason) == ("not_promoted", "CIDEr dropped 0.1 on the base set")
    third = runs.start_run(session, now=T0 + timedelta(days=2))
    runs.finish_run(session, third.id, status="failed", reason="out of memory")
    last = runs.last_promoted_run(session)
    assert (last.id, last.result_version, last.started_at) == (first.id, "v1", T0)
    assert last.data_counts == {"coco": 100, "feedback": 20} and last.metrics == {"cider": 0.5}
    assert [r.id for r in runs.list_runs(session)] == [third.id, second.id, first.id]
    assert [r.id for r in runs.list_runs(session, statuses=("promoted", "not_promoted"))] == [second.id, first.id]
    assert [r.id for r in runs.list_runs(session, limit=1)] == [third.id]
    with pytest.raises(InvalidArgument):
        runs.finish_run(session, first.id, status="running")
    with pytest.raises(InvalidArgument):
        runs.finish_run(session, first.id, status="succeeded")  # the old word for "promoted"
    with pytest.raises(InvalidArgument):
        runs.finish_run(session, 999, status="failed")


def test_concurrent_promotes_leave_one_active(engine):
    import threading

    ids = [f"v{n}" for n in range(6)]
    with session_scope(engine) as session:
        _register(session, *ids)
    barrier, errors = threading.Barrier(len(ids)), []

    def promote(version_id: str) -> None:
        try:
            barrier.wait()
            with session_scope(engine) as session:
                registry.promote(session, version_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=promote, args=(version_id,)) for version_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with session_scope(engine) as session:
        statuses = _statuses(session)
        assert sorted(statuses.values()) == ["active"] + ["retired"] * 5
        # Every promotion was logged, so rollback can walk back through all of them.
        active = registry.get_active(session).id
        assert registry.rollback(session).id != active


def _run_statuses(engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(text("SELECT status FROM training_runs ORDER BY id")))


def _insert_run(engine, status: str) -> None:
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO training_runs (started_at, status, data_counts, metrics) "
                                "VALUES (:at, :status, '{}', '{}')"), {"at": T0, "status": status})


def test_migration_0002_renames_succeeded_runs_to_promoted_and_back(database_url):
    db.upgrade(database_url, "0001")
    engine = db.create_engine_for(database_url)
    try:
        for status in ("succeeded", "not_promoted", "failed", "succeeded"):
            _insert_run(engine, status)
        assert db.upgrade(database_url, "0002") == "0002"
        assert _run_statuses(engine) == ["promoted", "not_promoted", "failed", "promoted"]
        with pytest.raises(IntegrityError):
            _insert_run(engine, "succeeded")
        with session_scope(engine) as session:
            assert runs.last_promoted_run(session).id == 4

        assert db.downgrade(database_url, "0001") == "0001"
        assert _run_statuses(engine) == ["succeeded", "not_promoted", "failed", "succeeded"]
        with pytest.raises(IntegrityError):
            _insert_run(engine, "promoted")
    finally:
        engine.dispose()
