"""The trained fixture's build: a development cache left half-built by an interrupted session builds again, and
the processes of one test run (xdist workers) share one child process training it."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest

from tests.trained_fixture import (
    CHILD_FILE, DONE_FILE, FAILED_FILE, TRAINED_BLIP_RECIPE, TRAINED_TINY_RECIPE, BackgroundBuild, build, cache_dir,
    child_running, is_built, seeded_recipe,
)


def small_recipe(base: dict = TRAINED_TINY_RECIPE, **train) -> dict:
    recipe = copy.deepcopy(base)
    recipe["data"].update(n_train=16, n_val=4, n_test=4)
    recipe["train"].update({"steps": 2, **train})
    return recipe


def test_a_build_interrupted_before_done_starts_over(tmp_path):
    recipe = small_recipe()
    build(tmp_path, recipe)
    (tmp_path / DONE_FILE).unlink()  # interrupted after training, before the build was marked done
    (tmp_path / "model" / "stray.txt").write_text("left by the interrupted build")

    fixture = build(tmp_path, recipe)

    assert is_built(tmp_path)
    assert (fixture.model_dir / "capbot.json").is_file()
    assert not (fixture.model_dir / "stray.txt").exists()


def test_a_family_recipe_builds_a_model_of_that_family_saved_by_plain_transformers(tmp_path):
    from inference.families import family_of
    from inference.modeldir import has_metadata

    fixture = build(tmp_path, small_recipe(TRAINED_BLIP_RECIPE))

    assert family_of(fixture.untrained_dir) == family_of(fixture.model_dir) == "blip"
    assert not has_metadata(fixture.untrained_dir)  # as tests/families.py saves it: no capbot.json
    assert (fixture.model_dir / "capbot.json").is_file()  # `capbot train` wrote this one


def test_each_fixture_has_its_own_development_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPBOT_TEST_FIXTURE_CACHE", str(tmp_path))
    roots = [cache_dir(seeded_recipe(recipe)) for recipe in (TRAINED_TINY_RECIPE, TRAINED_BLIP_RECIPE)]

    assert [root.name.split("-")[0] for root in roots] == ["trained_tiny", "trained_blip"]


def test_the_first_worker_starts_the_one_child_and_every_worker_gets_its_fixture(tmp_path):
    first, second = (BackgroundBuild(tmp_path, run="run-1", recipe=small_recipe()) for _ in range(2))

    assert first.start() is True
    assert second.start() is False  # the child of the first is training
    from_second = second.wait(poll_s=0.2)

    assert is_built(tmp_path) and (from_second.model_dir / "capbot.json").is_file()
    assert first.wait().model_dir == from_second.model_dir
    assert second.start() is False  # built: nothing to start


def test_a_failed_build_reaches_every_waiter_with_its_reason(tmp_path):
    recipe = small_recipe()
    recipe["init"]["preset"] = "no-such-preset"
    owner, other = (BackgroundBuild(tmp_path, run="run-1", recipe=recipe) for _ in range(2))
    owner.start()

    with pytest.raises(RuntimeError, match="unknown model preset 'no-such-preset'"):
        other.wait(poll_s=0.2)
    assert (tmp_path / FAILED_FILE).is_file() and not is_built(tmp_path)


def test_a_child_left_by_an_ended_run_does_not_block_a_new_build(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / CHILD_FILE).write_text(f"{int(ended.stdout)} run-0")  # that process is gone

    assert not child_running(tmp_path)
    assert BackgroundBuild(tmp_path, run="run-1", recipe=small_recipe()).start() is True
    assert child_running(tmp_path)
    BackgroundBuild(tmp_path, run="run-1").wait(poll_s=0.2)


def test_only_the_run_that_started_the_child_stops_it(tmp_path):
    owner = BackgroundBuild(tmp_path, run="run-1", recipe=small_recipe(steps=100_000))
    owner.start()

    BackgroundBuild(tmp_path, run="run-2").stop()  # another session sharing the development cache
    assert child_running(tmp_path)
    owner.stop()
    assert not child_running(tmp_path) and not is_built(tmp_path)


def test_the_child_may_use_every_core_of_the_run_though_its_worker_is_pinned_to_one(tmp_path):
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    pinned = os.sched_getaffinity(0)  # under `make test`, this worker's share
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))  # the kernel keeps the cores this process may use
    every = os.sched_getaffinity(0)
    if len(every) < 2:
        os.sched_setaffinity(0, pinned)
        pytest.skip("needs 2 cores")
    os.sched_setaffinity(0, {min(every)})  # as `make test` pins each xdist worker
    try:
        build = BackgroundBuild(tmp_path, run="run-1", recipe=small_recipe(steps=100_000), cpus=every)
        build.start()
        pid = int((tmp_path / CHILD_FILE).read_text().split()[0])
        assert os.sched_getaffinity(pid) == every
        build.stop()
    finally:
        os.sched_setaffinity(0, pinned)
