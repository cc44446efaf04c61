"""The retraining run lock: exclusive across processes, and free again when its holder dies."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import create_engine

from training.lock import ADVISORY_KEY, AdvisoryRunLock, FileRunLock, RetrainLocked, run_lock_for

POSTGRES_URL = os.environ.get("CAPBOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

_HOLDER = textwrap.dedent(
    """
    import sys
    from sqlalchemy import create_engine
    from training.lock import FileRunLock, AdvisoryRunLock
    kind, where = sys.argv[1], sys.argv[2]
    lock = FileRunLock(where) if kind == "file" else AdvisoryRunLock(create_engine(where))
    lock.acquire()
    print("locked", flush=True)
    sys.stdin.readline()  # hold until killed
    """
)


def _spawn_holder(kind: str, where: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, kind, where],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=os.getcwd(),
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _assert_exclusive_until_holder_dies(kind: str, where: str, make_lock) -> None:
    holder = _spawn_holder(kind, where)
    try:
        with pytest.raises(RetrainLocked) as info:
            make_lock().acquire()
        assert info.value.reason == "retrain_locked"
        assert "already in progress" in info.value.message
    finally:
        holder.kill()  # a crash: no release, no cleanup
        holder.wait(timeout=10)
    with make_lock():  # the OS / server dropped the dead holder's lock
        pass


def test_file_lock_excludes_another_process_and_recovers_after_kill(tmp_path):
    path = tmp_path / "retrain.lock"
    holder = _spawn_holder("file", str(path))
    try:
        with pytest.raises(RetrainLocked) as info:
            FileRunLock(path).acquire()
        assert f"pid {holder.pid}" in info.value.message
    finally:
        holder.kill()
        holder.wait(timeout=10)
    with FileRunLock(path):
        pass


def test_file_lock_excludes_a_second_lock_in_the_same_process_and_releases(tmp_path):
    first, second = FileRunLock(tmp_path / "l"), FileRunLock(tmp_path / "l")
    first.acquire()
    with pytest.raises(RetrainLocked):
        second.acquire()
    first.release()
    second.acquire()
    second.release()
    assert not (tmp_path / "l.info").exists()


def test_sqlite_engine_gets_a_file_lock(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert isinstance(run_lock_for(engine, tmp_path / "retrain.lock"), FileRunLock)


@pytest.mark.postgres
def test_advisory_lock_excludes_another_process_and_recovers_after_kill():
    engine = create_engine(POSTGRES_URL)
    try:
        assert isinstance(run_lock_for(engine, "/unused"), AdvisoryRunLock)
        _assert_exclusive_until_holder_dies("pg", POSTGRES_URL, lambda: AdvisoryRunLock(engine))
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_deployments_in_separate_schemas_of_one_database_do_not_lock_each_other_out(postgres_url):
    # Advisory locks are per database: the key must name the schema, or one deployment refuses the other's runs.
    own_schema, public = create_engine(postgres_url), create_engine(POSTGRES_URL)
    try:
        with AdvisoryRunLock(own_schema) as held:
            with AdvisoryRunLock(public) as other:  # the `public` deployment runs meanwhile
                assert other.key == ADVISORY_KEY != held.key  # public keeps the key older releases use
                with pytest.raises(RetrainLocked, match="database backend pid"):
                    AdvisoryRunLock(own_schema).acquire()  # still one run per deployment
        with AdvisoryRunLock(own_schema):
            pass  # released with the block
    finally:
        own_schema.dispose()
        public.dispose()
