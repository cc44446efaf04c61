"""What a test run adds to the checkout: the untracked and git-ignored files of the repository.

tests/conftest.py compares them before and after the session, so a test that writes into the working tree
(a default `capbot-data/`, `runs/`, `models/`) fails the run instead of leaving litter behind.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GIT = shutil.which("git")  # looked up at import: some tests point PATH elsewhere while they run

# Written by the tools themselves, not by the code under test.
NOT_WATCHED = (
    ":(exclude).venv",
    ":(exclude,glob)**/__pycache__/**",
    ":(exclude,glob)**/.pytest_cache/**",
    ":(exclude,glob)**/*.egg-info/**",
    ":(exclude,glob)**/.mypy_cache/**",
    ":(exclude,glob)**/.ruff_cache/**",
)


def untracked_files(repo: Path = REPO) -> set[str] | None:
    """Paths of untracked and ignored files in `repo`'s work tree (tool caches aside); None where git cannot tell."""
    if GIT is None:
        return None
    command = [GIT, "--no-optional-locks", "-C", str(repo), "status", "--porcelain=v1", "-z",
               "--untracked-files=all", "--ignored=traditional", "--", ".", *NOT_WATCHED]
    # --no-optional-locks: no index.lock, so a developer's git commands during the run are not refused.
    done = subprocess.run(command, capture_output=True, check=False)
    if done.returncode != 0:
        return None  # not a git checkout (e.g. an unpacked sdist)
    entries = done.stdout.split(b"\0")
    return {entry[3:].decode(errors="surrogateescape") for entry in entries if entry[:3] in (b"?? ", b"!! ")}


def left_behind(before: set[str] | None, after: set[str] | None) -> list[str]:
    """Files present after the run that were not there before, sorted (none when either snapshot is missing)."""
    if before is None or after is None:
        return []
    return sorted(after - before)
