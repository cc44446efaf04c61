"""The suite's own hygiene: tests work in temporary directories, and litter in the checkout is caught."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from capbot.settings import get_settings
from tests.isolation import GIT, left_behind, untracked_files


def _git(repo: Path, *args: str) -> None:
    subprocess.run([GIT, "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.test", *args],
                   check=True, capture_output=True)


def _touch(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_test_runs_in_its_own_directory_with_its_own_data_dir(tmp_path):
    assert Path.cwd() == tmp_path  # so a `.env` in the checkout is not read, and relative paths land here
    assert get_settings().data_dir == tmp_path / "capbot-data"
    assert [n for n in os.environ if n.startswith("CAPBOT_") and not n.startswith("CAPBOT_TEST_")] == ["CAPBOT_DATA_DIR"]


def test_new_untracked_and_ignored_files_are_reported_but_tool_caches_are_not(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _touch(repo / ".gitignore", "capbot-data/\n*.db\n.venv/\n__pycache__/\n.pytest_cache/\n*.egg-info/\n")
    _touch(repo / "kept.txt", "x")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "start")
    _touch(repo / "capbot-data" / "old.db")  # the developer's own data, there before the run
    before = untracked_files(repo)

    _touch(repo / "capbot-data" / "capbot.db")  # ignored, in a directory that already existed
    _touch(repo / "runs" / "a" / "log.txt")  # untracked
    _touch(repo / "kept.txt", "edited")  # an edit to a tracked file is the developer's work, not litter
    for tool_file in (".venv/lib/x.py", "pkg/__pycache__/m.pyc", ".pytest_cache/v/x", "capbot.egg-info/PKG-INFO"):
        _touch(repo / tool_file)

    assert left_behind(before, untracked_files(repo)) == ["capbot-data/capbot.db", "runs/a/log.txt"]


def test_outside_a_git_checkout_nothing_is_compared(tmp_path):
    assert untracked_files(tmp_path) is None
    assert left_behind(None, {"x"}) == []
