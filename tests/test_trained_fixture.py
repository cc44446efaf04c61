"""The trained fixture's build: a development cache left half-built by an interrupted session builds again."""

from __future__ import annotations

import copy

from tests.trained_fixture import TRAINED_TINY_RECIPE, DONE_FILE, build, is_built


def test_a_build_interrupted_before_done_starts_over(tmp_path):
    recipe = copy.deepcopy(TRAINED_TINY_RECIPE)
    recipe["data"].update(n_train=16, n_val=4, n_test=4)
    recipe["train"]["steps"] = 2
    build(tmp_path, recipe)
    (tmp_path / DONE_FILE).unlink()  # interrupted after training, before the build was marked done
    (tmp_path / "model" / "stray.txt").write_text("left by the interrupted build")

    fixture = build(tmp_path, recipe)

    assert is_built(tmp_path)
    assert (fixture.model_dir / "capbot.json").is_file()
    assert not (fixture.model_dir / "stray.txt").exists()
