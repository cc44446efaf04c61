"""Local stand-ins for the Modal side of capbot, and a reader for what a Modal app registered.

Modal's service is unreachable in tests, so what it would provide is replaced by the smallest object
that behaves the same for the code under test: a Volume that records commits and reloads, and a deployed
class whose `cls().caption.spawn(image, options)` runs the real GPU-side code in this process.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

_ids = itertools.count(1)


@dataclass
class LocalVolume:
    """Stands in for a mounted `modal.Volume`: counts commits and reloads; `on_reload` plays the new state."""

    name: str = "volume"
    on_commit: Callable[[], None] | None = None
    on_reload: Callable[[], None] | None = None
    commits: int = 0
    reloads: int = 0

    def commit(self) -> None:
        self.commits += 1
        if self.on_commit is not None:
            self.on_commit()

    def reload(self) -> None:
        self.reloads += 1
        if self.on_reload is not None:
            self.on_reload()


@dataclass
class LocalCall:
    """A spawned call whose outcome is known: a result, or an exception `get` raises."""

    result: Any = None
    error: BaseException | None = None
    cancelled: bool = False
    object_id: str = field(default_factory=lambda: f"fc-local-{next(_ids)}")

    def get(self, timeout: float | None = None) -> Any:
        if self.error is not None:
            raise self.error
        return self.result

    def cancel(self) -> None:
        self.cancelled = True


class LocalMethod:
    """`cls().caption` of a deployed class: `spawn(image, options)` runs `run` at once, unless `failures`
    (exceptions, or None for "succeed") say otherwise for the next calls. `spawn_error` fails every spawn."""

    def __init__(self, run: Callable[[bytes, dict], dict], *, failures: list[BaseException | None] | None = None,
                 spawn_error: BaseException | None = None) -> None:
        self.run = run
        self.failures = list(failures or [])
        self.spawn_error = spawn_error
        self.calls: list[LocalCall] = []
        self.sent: list[tuple[bytes, dict]] = []  # every spawned (image, options)

    def spawn(self, image: bytes, options: dict) -> LocalCall:
        if self.spawn_error is not None:
            raise self.spawn_error
        self.sent.append((image, options))
        failure = self.failures.pop(0) if self.failures else None
        call = LocalCall(error=failure) if failure is not None else LocalCall(result=self.run(image, options))
        self.calls.append(call)
        return call


class LocalDeployment:
    """What `modal.Cls.from_name(app, name)` returns, as far as `ModalCaptioner` uses it; pass `lookup`."""

    def __init__(self, method: LocalMethod, *, lookup_error: BaseException | None = None) -> None:
        self.caption = method
        self.lookup_error = lookup_error
        self.looked_up: list[tuple[str, str]] = []

    def lookup(self, app_name: str, class_name: str) -> "LocalDeployment":
        self.looked_up.append((app_name, class_name))
        if self.lookup_error is not None:
            raise self.lookup_error
        return self

    def __call__(self) -> "LocalDeployment":
        return self


@dataclass(frozen=True)
class Registered:
    """One function (or class) of a Modal app as registered: Modal's `FunctionInfo` and its autoscaler."""

    info: Any  # modal.types.FunctionInfo
    min_containers: int
    max_containers: int
    scaledown_window: int


def registered(app: Any) -> dict[str, Registered]:
    """Every function and class an app carries (a class as "Name.*"), read from the app's objects.

    `App.registered_functions` raises Modal's DeprecationError (an error in these tests), so this reads
    the same mapping where Modal's own CLI does (`app._local_state.functions`). The autoscaler settings
    (min/max containers, scale-down window) are not in `FunctionInfo`; they are read from the
    definition Modal would send to its servers, which the function object holds until it is deployed.
    """
    return {tag: _registered(function) for tag, function in app._local_state.functions.items()}


def _registered(function: Any) -> Registered:
    info = asyncio.run(function.info())
    loader = function._load
    autoscaler = loader.__closure__[loader.__code__.co_freevars.index("autoscaler_settings")].cell_contents
    return Registered(info, autoscaler.min_containers, autoscaler.max_containers, autoscaler.scaledown_window)
