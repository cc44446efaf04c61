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


@pytest.fixture(scope="session")
def family_model_dirs(synthetic_dataset, tmp_path_factory):
    """A tiny random model of each non-ViT+GPT-2 family (BLIP, GIT, Florence-2, SmolVLM) with a tokenizer
    trained on the synthetic captions, saved by plain transformers code (`tests.families`): {family: directory}.
    Read-only for tests: copy one before changing files (the fast path's graph cache, which it writes beside a
    model and keys by the weights, is shared on purpose)."""
    from tests.families import build_family_model, synthetic_captions

    root = tmp_path_factory.mktemp("family_models")
    captions = synthetic_captions(synthetic_dataset.out_dir)
    return {family: build_family_model(family, root / family, captions).path
            for family in ("blip", "git", "florence2", "smolvlm")}


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
from pathlib import Path as _Path  # noqa: E402

from tests.trained_fixture import (  # noqa: E402
    TRAINED_BLIP_RECIPE, BackgroundBuild, TrainedTinyModel, build, cache_dir, is_built, load, seeded_recipe,
)

# The learning fixtures, by fixture name: the recipe each trains (the VED `tiny` preset, and a tiny BLIP).
_RECIPES = {"trained_tiny_model": lambda: seeded_recipe(), "trained_blip_model": lambda: seeded_recipe(TRAINED_BLIP_RECIPE)}
_background: "dict[str, BackgroundBuild]" = {}  # the builds this process started, by fixture name


def _run_basetemp(config) -> _Path:
    """This test run's base temporary directory, the same in every xdist worker (each works in a child of it)."""
    basetemp = config._tmp_path_factory.getbasetemp()
    return basetemp.parent if hasattr(config, "workerinput") else basetemp


def _fixture_build(config, name: str = "trained_tiny_model") -> BackgroundBuild:
    """The run's build of a trained fixture: in the development cache, else in the run's temporary directory."""
    recipe = _RECIPES[name]()
    root = cache_dir(recipe)
    run = _run_basetemp(config)
    if root is None:
        root = run / name.removesuffix("_model")
        root.mkdir(exist_ok=True)
    # The child may use any core; the VED build keeps its default recipe argument (the child's own `seeded_recipe`).
    return BackgroundBuild(root, run=str(run), recipe=None if name == "trained_tiny_model" else recipe, cpus=_run_cpus)


def _needed(items) -> dict[str, set]:
    """The modules of the selected tests that use each trained fixture, by fixture name (unused ones left out)."""
    needed = {name: {item.path for item in items if name in getattr(item, "fixturenames", ())} for name in _RECIPES}
    return {name: modules for name, modules in needed.items() if modules}


def _fixture_modules(items) -> set:
    return set().union(*_needed(items).values())


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`make test`'s two workers: one runs every test that does not use the trained fixture, in order, while the
    fixture trains; both share the fixture's modules afterwards (`tests/xdist_schedule.py`)."""
    from tests.xdist_schedule import TrainedFixtureScheduling

    if config.getvalue("dist") not in ("load", "loadscope"):
        return None  # another mode asked for by name
    return TrainedFixtureScheduling(config, log, run_dir=_run_basetemp(config))


_run_cpus: "set[int] | None" = None  # every core the run may use, where an xdist worker pinned itself to its share


def _pin_xdist_worker(config) -> None:
    """Pin an xdist worker to its share of the cores (on 2 cores, one each). Torch and ONNX Runtime start as
    many threads as the process may use cores, so two unpinned workers put four busy threads on two cores
    (a load of 4 was seen), and threads of one parallel op waiting for each other on a busy core make it
    several times slower (docs/performance.md, "Threads"). Runs before the worker imports torch, so its
    default thread count follows."""
    global _run_cpus
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None or not hasattr(os, "sched_setaffinity"):
        return
    cpus, workers = sorted(os.sched_getaffinity(0)), int(workerinput["workercount"])
    if len(cpus) < workers:
        return
    _run_cpus = set(cpus)
    os.sched_setaffinity(0, set(cpus[int(workerinput["workerid"].removeprefix("gw"))::workers]))


def pytest_configure(config):
    _pin_xdist_worker(config)


@pytest.hookimpl(trylast=True)  # after `-m`/`-k` deselected what will not run
def pytest_collection_modifyitems(session, config, items):
    """When a selected test needs `trained_tiny_model`, start training it in a child process now (unless another
    worker of this run did) and move the modules that use it to the end: the rest of the suite runs on the
    other core meanwhile (whole modules move, in their own order, so module-scoped fixtures are set up once)."""
    needing = _fixture_modules(items)
    if not needing or config.option.collectonly:
        return
    items[:] = [i for i in items if i.path not in needing] + [i for i in items if i.path in needing]
    if hasattr(config, "workerinput"):
        from tests.xdist_schedule import write_trained_modules

        write_trained_modules(_run_basetemp(config), [i.nodeid for i in items if i.path in needing])
    for name in _needed(items):
        _background[name] = _fixture_build(config, name)
        _background[name].start()


def pytest_unconfigure(config):
    """The main process (the only one, or xdist's controller) ends a fixture build still running: an
    interrupted run. Workers never do, since another worker may still be waiting for it."""
    if hasattr(config, "workerinput"):
        return
    if _background:
        for build_ in _background.values():
            build_.stop()
    elif config.pluginmanager.hasplugin("dsession"):  # the controller: its workers may have started some
        for name in _RECIPES:
            _fixture_build(config, name).stop()


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
    """The tiny preset trained on synthetic shapes (`tests.trained_fixture`), once per session: from the
    child process started at collection, the development cache, or trained here (~6 min on one idle core).

    Read-only for tests: copy `model_dir` before changing it. It names the main object's colour and shape
    on >= 90% of held-out test images (tests/training/test_train_learning.py checks this).
    """
    return _trained("trained_tiny_model", tmp_path_factory)


@pytest.fixture(scope="session")
def trained_blip_model(tmp_path_factory) -> TrainedTinyModel:
    """A tiny BLIP (`tests.families`, no capbot.json) trained from scratch by the same recipe on the same kind of
    synthetic shapes (`tests.trained_fixture.TRAINED_BLIP_RECIPE`), once per session, like `trained_tiny_model`
    (beside it, in a child process of its own). Read-only for tests. tests/training/test_blip_learning.py
    checks it names colour and shape on >= 90% of held-out images."""
    return _trained("trained_blip_model", tmp_path_factory)


def _trained(name: str, tmp_path_factory) -> TrainedTinyModel:
    """A trained fixture: from the child process started at collection, the development cache, or trained here."""
    if name in _background:
        return _background[name].wait()
    recipe = _RECIPES[name]()
    cached = cache_dir(recipe)
    if cached is not None and is_built(cached):
        return load(cached)
    return build(cached or tmp_path_factory.mktemp(name.removesuffix("_model")), recipe)

