"""Serving follows the registry: when another process promotes or rolls back a version, swap it in.

A background thread polls the registry's active version; a change calls `captioner.reload(location)`,
which loads the new model beside the old one and swaps without dropping requests. A failed load is logged
and retried at the next poll, while the old model keeps serving.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Protocol

log = logging.getLogger(__name__)


class Reloadable(Protocol):
    def reload(self, model: str) -> str: ...


class RegistryFollower:
    """Polls `active_location()` every `interval_s` seconds and reloads the captioner when it changes."""

    def __init__(self, captioner: Reloadable, active_location: Callable[[], str], *,
                 current: str, interval_s: float = 30.0) -> None:
        self.captioner = captioner
        self.active_location = active_location
        self.current = current
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="capbot-registry-follower", daemon=True)

    def start(self) -> "RegistryFollower":
        """Start polling in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling (waits for a reload in progress)."""
        self._stop.set()
        self._thread.join(timeout=60)

    def check_once(self) -> bool:
        """Reload if the active version moved; True when a new model is now serving."""
        location = self.active_location()
        if location == self.current:
            return False
        try:
            version = self.captioner.reload(location)
        except Exception:
            log.exception("could not load the newly active model; the previous one keeps serving",
                          extra={"location": location})
            return False
        log.info("now serving the registry's active version", extra={"version": version, "location": location})
        self.current = location
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check_once()
            except Exception:  # e.g. the database is briefly unreachable: try again next time
                log.exception("registry poll failed")
