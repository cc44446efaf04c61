"""TensorBoard as a WSGI app over a directory of training runs (Modal's `@modal.wsgi_app` serves it).

`capbot tensorboard` starts TensorBoard's own server (`training.tb.serve_tensorboard`); on Modal the
platform serves the WSGI app instead, so it is built from TensorBoard's parts here. `refresh` (a Volume
reload on Modal) runs at most every `refresh_every_s` seconds before a request, so runs committed after
the container started can appear; a refresh that fails (TensorBoard holds event files open) is skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


def tensorboard_wsgi(logdir: str | Path, *, refresh: Callable[[], None] | None = None,
                     refresh_every_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> WSGIApp:
    """A TensorBoard WSGI app reading `logdir` (created if missing, so an empty deployment still serves)."""
    from tensorboard import program
    from tensorboard.backend import application

    path = Path(logdir)
    path.mkdir(parents=True, exist_ok=True)
    board = program.TensorBoard()
    # load_fast=false: the pure-Python reader; the Rust data server would be a second process to manage.
    board.configure(logdir=str(path), load_fast="false", reload_interval=30)
    # TensorBoard's own launch() binds its own server; this is the same app, for Modal to serve.
    data_provider, multiplexer = board._make_data_provider()
    app = application.TensorBoardWSGIApp(board.flags, board.plugin_loaders, data_provider,
                                         board.assets_zip_provider, multiplexer)
    return _Refreshing(app, refresh, refresh_every_s, clock) if refresh is not None else app


class _Refreshing:
    """WSGI middleware: call `refresh` before a request when it is due (one caller at a time)."""

    def __init__(self, app: Any, refresh: Callable[[], None], every_s: float, clock: Callable[[], float]) -> None:
        self.app, self.refresh, self.every_s, self.clock = app, refresh, every_s, clock
        self._due = clock()
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if self.clock() >= self._due and self._lock.acquire(blocking=False):
            try:
                self._due = self.clock() + self.every_s
                self.refresh()
            except Exception as exc:
                log.debug("log refresh skipped: %s", exc)
            finally:
                self._lock.release()
        return self.app(environ, start_response)
