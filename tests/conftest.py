"""Fixtures shared across test packages (tiny models, synthetic data, databases).

Each fixture calls the real library code to build what it returns; expensive ones are session-scoped.
"""

from __future__ import annotations

import os

# Tests never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """A small synthetic COCO-format dataset (train 40 / val 12 / test 12, 64 px); returns its SyntheticSummary.

    Read-only for tests: copy it before changing files. `.out_dir` is the dataset directory.
    """
    from training.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("synthetic"), n_train=40, n_val=12, n_test=12, seed=0, image_size=64)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A freshly initialised `tiny` preset model directory (random weights, trained BPE tokenizer, seed 0).

    Read-only for tests: copy it before changing files. Load it with `LocalCaptioner(path)` or
    `from_pretrained(path)`; `inference.modeldir.load_metadata(path)` gives its capbot.json.
    """
    from inference.model_init import init_model

    out = tmp_path_factory.mktemp("tiny_model") / "model"
    init_model(out, preset="tiny", seed=0)
    return out


# --- databases (storage) ---
import uuid  # noqa: E402

POSTGRES_URL = os.environ.get("CAPBOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """The URL of an EMPTY database: a SQLite file, or a fresh Postgres schema dropped afterwards.

    Call `storage.db.upgrade(url)` to create the tables. The Postgres case is skipped only when the server
    at CAPBOT_TEST_POSTGRES_URL cannot be reached.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'capbot.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    schema = f"capbot_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc.orig}")
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        # search_path puts every table, index and alembic_version in the test's own schema; the
        # application_name lets teardown end connections a failed test left open in a transaction.
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}&application_name={schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": schema},
            )
            connection.execute(text("SET lock_timeout = '20s'"))
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
