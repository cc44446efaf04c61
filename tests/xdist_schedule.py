"""How `make test` shares the suite between its two pytest-xdist workers.

Every module that does not use the trained fixture goes, as one unit, to one worker, which runs them in
order as a plain `pytest` would (they share the PostgreSQL server, ports and file locks, and were written
to run one at a time). Each module that uses the fixture is a unit of its own: the other worker starts on
them, waits for the fixture's training, and both workers share them once it is trained. The controller
does not collect, so the workers record which modules use the fixture in a file of the run's temporary
directory (`write_trained_modules`), which they finish before the controller schedules anything.

xdist's own `--dist loadgroup` would do this with markers, but it renames test ids in a way pytest 9.2
ignores, so it groups nothing there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from xdist.scheduler import LoadScopeScheduling

SERIAL = "serial"  # the unit of every test that does not use the trained fixture
TRAINED_MODULES_FILE = "trained-modules.json"


def module_of(nodeid: str) -> str:
    """The module part of a test id (`tests/x.py::test_y[1]` -> `tests/x.py`)."""
    return nodeid.split("::", 1)[0]


def write_trained_modules(run_dir: Path, nodeids: list[str]) -> None:
    """Record, for the controller, the modules of these tests (the ones that use the trained fixture)."""
    path = run_dir / TRAINED_MODULES_FILE
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # each worker writes the same list
    tmp.write_text(json.dumps(sorted({module_of(n) for n in nodeids})))
    tmp.replace(path)


class TrainedFixtureScheduling(LoadScopeScheduling):
    """LoadScope with two kinds of unit: all serial tests in one, each trained-fixture module in its own."""

    def __init__(self, config, log=None, *, run_dir: Path) -> None:
        super().__init__(config, log)
        self._file = run_dir / TRAINED_MODULES_FILE
        self._trained: set[str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._trained is None:  # first called once every worker has collected
            try:
                self._trained = set(json.loads(self._file.read_text()))
            except (OSError, ValueError):
                self._trained = set()  # no selected test uses the fixture
        module = module_of(nodeid)
        return module if module in self._trained else SERIAL
