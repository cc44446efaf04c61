"""`capbot run` as a user starts it, in a subprocess on a free port, for tests that go through the real server."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


@dataclass(frozen=True)
class RunningCapbot:
    """A started `capbot run`: its base URL (ending in /), data directory and database URL."""

    url: str
    data_dir: Path
    log: list[str]
    pid: int = 0

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'capbot.db'}"


@contextlib.contextmanager
def running_capbot(workdir: Path, model_dir: Path, *, timeout_s: float = 180, **env: str) -> Iterator[RunningCapbot]:
    """Start `python -m capbot run` in `workdir` with the tiny model on port 0; SIGTERM it afterwards.

    Captions are 4 tokens long unless `env` says otherwise (the untrained model never stops early)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CAPBOT_")}
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    environ.update(CAPBOT_DATA_DIR=str(data_dir), CAPBOT_MODEL=str(model_dir), CAPBOT_DEVICE="cpu", CAPBOT_PORT="0",
                   CAPBOT_MAX_NEW_TOKENS="4", **env)
    process = subprocess.Popen([sys.executable, "-m", "capbot", "run"], cwd=workdir, env=environ,
                               stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    try:
        url = wait_for_url(process, log, timeout_s)
        drain = threading.Thread(target=lambda: log.extend(process.stderr), daemon=True)  # never block on a full pipe
        drain.start()
        yield RunningCapbot(url, data_dir, log, process.pid)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        drain.join(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_for_url(process: subprocess.Popen, log: list[str], timeout_s: float = 180) -> str:
    """The URL `capbot run` says it listens on, read from its stderr (every line read is kept in `log`)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        log.append(line)
        found = re.search(r"url=(http://\S+)", line)
        if found and "listening" in line:
            return found.group(1)
    raise AssertionError("capbot run did not start:\n" + "".join(log))
