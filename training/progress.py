"""Training progress on a terminal: a live bar of steps, loss, samples/s and time left.

When stderr is not a terminal (CI, Modal, a log file) there is no bar; the training loop's structured
"train step" log lines carry the same numbers. While the bar is drawn, transformers' warnings go through
Python logging like capbot's own lines, so they print above the bar instead of into it (transformers'
own handler writes to the stderr it found at import, past the bar's redirection).
"""

from __future__ import annotations

import logging
import math
import threading
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class NoBar:
    """What the loop talks to when no bar is shown."""

    shown = False

    def advance(self, steps: int = 1) -> None:
        """Nothing to draw."""

    def show(self, loss: float, samples_per_second: float) -> None:
        """Nothing to draw."""


class StepBar:
    """A rich progress bar of optimizer steps with the latest loss and throughput."""

    shown = True

    def __init__(self, progress: Progress, task: int) -> None:
        self._progress, self._task = progress, task

    def advance(self, steps: int = 1) -> None:
        """Count finished optimizer steps."""
        self._progress.advance(self._task, steps)

    def show(self, loss: float, samples_per_second: float) -> None:
        """Put the latest logging window's numbers on the bar."""
        shown_loss = "-" if math.isnan(loss) else f"{loss:.4f}"
        self._progress.update(self._task, loss=shown_loss, rate=f"{samples_per_second:,.1f}")


@contextmanager
def step_bar(done: int, total: int, *, console: Console | None = None) -> Iterator[NoBar | StepBar]:
    """A bar from `done` to `total` steps on `console` (default: stderr) when it is a terminal."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield NoBar()
        return
    columns = (
        TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} samples/s"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
    )
    with _transformers_logs_through_logging(), Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("steps", total=total, completed=done, loss="-", rate="-")
        yield StepBar(progress, task)


_reroute_lock = threading.Lock()
_reroute_users = 0
_saved_propagate = False


@contextmanager
def _transformers_logs_through_logging() -> Iterator[None]:
    """transformers' log records go to the root logger's handlers instead of its own stderr handler.

    Counted, not saved per bar: two trainings in one process (a retrain thread beside a CLI run) open and
    close their bars interleaved, and a per-bar save would restore the other bar's state, not the original.
    """
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # nothing to reroute
        yield
        return
    global _reroute_users, _saved_propagate
    library = logging.getLogger("transformers")
    with _reroute_lock:
        if _reroute_users == 0:
            hf_logging.disable_default_handler()  # also sets transformers' own handler up if it was not yet
            _saved_propagate, library.propagate = library.propagate, True
        _reroute_users += 1
    try:
        yield
    finally:
        with _reroute_lock:
            _reroute_users -= 1
            if _reroute_users == 0:
                library.propagate = _saved_propagate
                hf_logging.enable_default_handler()
