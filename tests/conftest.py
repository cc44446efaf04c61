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

from tests.isolation import REPO, left_behind, untracked_files  # noqa: E402


# --- isolation: tests leave the checkout and the developer's settings alone ---
@pytest.fixture(scope="session", autouse=True)
def _repository_left_clean():
    """Fail the run when it left new files in the repository (tests write under pytest's tmp dirs only)."""
    before = untracked_files()
    yield
    left = left_behind(before, untracked_files())
    if left:
        pytest.fail(f"the tests left {len(left)} new file(s) in {REPO}: {', '.join(left[:20])}. "
                    "Write under tmp_path, and give CLI commands a data directory.", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _isolated_session(_repository_left_clean, tmp_path_factory):
    """No developer CAPBOT_* variables or `.env` (read from the working directory), and a scratch directory to
    work in; subprocesses can still import `tests.` (the repository is on PYTHONPATH). Returns the directory."""
    scratch = tmp_path_factory.mktemp("session")
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("CAPBOT_") and not n.startswith("CAPBOT_TEST_")]:
            patch.delenv(name)
        patch.setenv("CAPBOT_DATA_DIR", str(scratch / "capbot-data"))
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        patch.chdir(scratch)
        yield scratch


@pytest.fixture(autouse=True)
def _isolated_test(_isolated_session, tmp_path, monkeypatch):
    """Each test works in its own tmp_path, with CAPBOT_DATA_DIR under it, unless a module fixture chose them."""
    if os.environ.get("CAPBOT_DATA_DIR") == str(_isolated_session / "capbot-data"):
        monkeypatch.setenv("CAPBOT_DATA_DIR", str(tmp_path / "capbot-data"))
    if os.getcwd() == str(_isolated_session):
        monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """A small synthetic COCO-format dataset (train 40 / val 12 / test 12, 64 px); returns its SyntheticSummary.

    Read-only for tests: copy it before changing files. `.out_dir` is the dataset directory.
    """
    from training.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("synthetic"), n_train=40, n_val=12, n_test=12, seed=0, image_size=64)


@pytest.fixture
def exact_cuda_math():
    """No TF32 in CUDA convolutions and matmuls, so GPU fp32 can be compared with CPU fp32 (restored after)."""
    import torch

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


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
        return f"sqlite:///{tmp_path / 'capbot.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def postgres_url():
    """The URL of an EMPTY Postgres schema, dropped afterwards (mark tests using it `postgres`)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    schema = f"capbot_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        admin.dispose()
        if os.environ.get("CI"):  # CI must exercise Postgres: .ci/run starts the server, so failing here is a real problem
            pytest.fail(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc.orig}")
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


# --- a trained model (training) ---
from dataclasses import dataclass as _dataclass  # noqa: E402
from pathlib import Path as _Path  # noqa: E402
from typing import Any as _Any  # noqa: E402

# The learning recipe the acceptance test checks; it is the README's "Try it offline" recipe (a test,
# tests/capbot/test_readme_offline.py, holds the two together), so the learning test proves the README.
TRAINED_TINY_RECIPE = {
    # Three shapes in six colours. With 3,000 training images the tiny model learned them by heart: at seed 2
    # it named 100% of training images but 87% of held-out ones (91% after 8,000 steps). 10,000 images for
    # the same 5,000 steps gave 95% held-out at seed 2 (2026-12-02, one CPU thread).
    "data": {"n_train": 10000, "n_val": 64, "n_test": 200, "seed": 0, "image_size": 64,
             "shapes": ("circle", "square", "triangle")},
    "init": {"preset": "tiny", "seed": 0},  # the tokenizer is trained on the train split's captions
    # lr 1e-3 beat 5e-4, 2e-3 and 3e-3 at 2,500 steps. One thread: a model this small gains little from a
    # second, and on a busy 2-core machine two threads waiting for each other trained 7x slower (2026-12-02).
    "train": {"steps": 5000, "batch_size": 32, "lr": 1e-3, "warmup_steps": 50, "cpu_threads": 1, "seed": 0},
}
# Another seed for the data, the initial weights and the training order, to check the learning tests
# hold beyond seed 0 (e.g. CAPBOT_TEST_LEARNING_SEED=1 pytest -m slow).
LEARNING_SEED = int(os.environ.get("CAPBOT_TEST_LEARNING_SEED", "0"))


@_dataclass(frozen=True)
class TrainedTinyModel:
    """The `tiny` preset trained from scratch on synthetic shapes (see `trained_tiny_model`)."""

    model_dir: _Path  # the trained model directory (capbot.json: made_by "train", parent = untrained_dir's version)
    untrained_dir: _Path  # the same architecture and tokenizer before training
    data_dir: _Path  # the synthetic dataset it learned from: train / val / test splits + scenes_<split>.json
    result: _Any  # training.train.TrainResult


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tiny-model training on one CPU thread (restored afterwards).

    Tiny models gain little from a second thread, and on a busy machine two threads waiting for each other
    make training 3-4x slower.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained_tiny_model(tmp_path_factory) -> TrainedTinyModel:
    """Train the tiny preset on a synthetic dataset once per session (~5 min on one idle core).

    Read-only for tests: copy `model_dir` before changing it. It names the main object's colour and shape
    on >= 90% of held-out test images (tests/training/test_train_learning.py checks this).
    """
    from inference.model_init import init_model, read_captions
    from training.data.synthetic import generate_synthetic
    from training.train import TrainArgs, train

    recipe = {part: {**values, "seed": LEARNING_SEED} for part, values in TRAINED_TINY_RECIPE.items()}
    cached = _fixture_cache_dir(recipe)
    if cached is not None and (cached / "done").exists():
        return _trained_tiny_at(cached)
    root = tmp_path_factory.mktemp("trained_tiny") if cached is None else cached
    data = generate_synthetic(root / "data", **recipe["data"])
    untrained = root / "untrained"
    init_model(untrained, captions=read_captions(data.annotations("train")), **recipe["init"])
    result = train(TrainArgs(
        model=str(untrained), data=str(data.out_dir), out=root / "model", run_dir=root / "run", eval_limit=0,
        eval_meteor=False, tensorboard=False, progress=False, log_every=50, **recipe["train"],
    ))
    if cached is not None:
        import pickle

        (cached / "result.pickle").write_bytes(pickle.dumps(result))
        (cached / "done").write_text("trained\n")
    return TrainedTinyModel(model_dir=result.model_dir, untrained_dir=untrained, data_dir=data.out_dir, result=result)


# The code that decides what the fixture's weights are: data, initialisation, image path and training loop.
_FIXTURE_SOURCES = (
    "training/train.py", "training/train_run.py", "training/collate.py", "training/args.py", "training/checkpoint.py",
    "training/data/synthetic.py", "training/data/coco.py", "inference/model_init.py", "inference/presets.py",
    "inference/pixels.py", "inference/images.py", "inference/modeldir.py",
)


def _fixture_cache_dir(recipe: dict) -> "_Path | None":
    """Where to keep the trained fixture between sessions, when CAPBOT_TEST_FIXTURE_CACHE names a directory.

    For development only (several people or agents iterating on learning tests would each spend minutes
    retraining it): the key is the recipe and the training code's sources, so a change to either trains
    afresh (`_FIXTURE_SOURCES`; delete the directory after changing other code the fixture uses). CI never sets it, so every clean clone trains its own.
    """
    import hashlib
    import json

    root = os.environ.get("CAPBOT_TEST_FIXTURE_CACHE")
    if not root:
        return None
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode())
    for source in _FIXTURE_SOURCES:
        digest.update((REPO / source).read_bytes())
    path = _Path(root) / f"trained_tiny-{digest.hexdigest()[:16]}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _trained_tiny_at(root: "_Path") -> TrainedTinyModel:
    import pickle

    result = pickle.loads((root / "result.pickle").read_bytes())
    return TrainedTinyModel(model_dir=result.model_dir, untrained_dir=root / "untrained", data_dir=root / "data",
                            result=result)
