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

    def hydrate(self) -> "LocalDeployment":
        self.hydrated = True
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


def image_build_steps(image: Any, builder_version: str = "2025.06") -> list[tuple[list[str], dict[str, str]]]:
    """The Dockerfile commands (and local files they copy) that build `image`, base first.

    Modal renders these only while deploying; this calls the same per-layer functions the image holds.
    """
    from modal._utils.async_utils import synchronizer

    raw = synchronizer._translate_in(image)
    cells = dict(zip(raw._load.__code__.co_freevars, raw._load.__closure__))
    steps: list[tuple[list[str], dict[str, str]]] = []
    for base in cells["base_images"].cell_contents.values():
        steps += image_build_steps(base, builder_version)
    render = cells["dockerfile_function"].cell_contents
    if render is not None:
        spec = render(builder_version)
        steps.append((list(spec.commands), dict(spec.context_files)))
    return steps


@dataclass
class Deployment:
    """A capbot Modal container's view in this process: settings from the environment, local Volumes."""

    data_dir: Any  # CAPBOT_DATA_DIR (what /data is in a container)
    volumes: dict[str, LocalVolume]
    database_url: str
    migrations: int = 0  # runs of the migration job containers asked for

    @property
    def models_dir(self) -> Any:
        return self.data_dir / "models"


def deployment_env(monkeypatch: Any, tmp_path: Any, tiny_model_dir: Any, database_url: str, **settings: str) -> Deployment:
    """Set the environment a container gets from the image and the Modal Secret, swap each module-level
    `modal.Volume` (which needs Modal's service) for a `LocalVolume`, and let a container that finds the
    schema behind run the migration job's body here (`Deployment.migrations` counts those runs). Pass
    `CAPBOT_*` overrides as keywords."""
    import os

    import capbot.modal.app  # noqa: F401  (defined with the real Volume objects before the stand-ins replace them)
    from capbot.modal import container, image
    from capbot.modal.plan import VOLUME_ROLES

    for name in [k for k in os.environ if k.startswith(("CAPBOT_", "MODAL_"))]:
        monkeypatch.delenv(name)
    data_dir = tmp_path / "data"
    env = {"CAPBOT_DATABASE_URL": database_url, "CAPBOT_DATA_DIR": str(data_dir), "CAPBOT_MODEL": str(tiny_model_dir),
           "CAPBOT_DEVICE": "cpu", "CAPBOT_MAX_NEW_TOKENS": "5", **settings}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no .env from the checkout
    from capbot.modal.plan import PLAN_ENV, ModalPlan
    from capbot.settings import get_settings

    monkeypatch.setenv(PLAN_ENV, ModalPlan.from_settings(get_settings()).to_json())  # shipped by the deploy
    volumes = {role: LocalVolume(role) for role in VOLUME_ROLES}
    for role, volume in volumes.items():
        monkeypatch.setitem(image.volumes, role, volume)
    deployment = Deployment(data_dir, volumes, database_url)

    def migration_job() -> dict:  # what `migrate_database.remote()` runs in its own container
        deployment.migrations += 1
        return container.migrate_database()

    monkeypatch.setattr(container, "ask_migration_job", migration_job)
    return deployment


def promote_copy(tiny_model_dir: Any, models_dir: Any, database_url: str) -> str:
    """Put a copy of the tiny model under a new version id in `models_dir`, register and promote it (what a
    retraining run in another container does); returns the version id."""
    import shutil

    from inference.modeldir import METADATA_FILE, new_metadata
    from storage import db, registry

    meta = new_metadata(made_by="retrain")
    target = models_dir / meta.version
    shutil.copytree(tiny_model_dir, target)
    (target / METADATA_FILE).write_text(meta.to_json(), encoding="utf-8")
    engine = db.create_engine_for(database_url)
    try:
        with db.session_scope(engine) as session:
            registry.register_version(session, version_id=meta.version, location=str(target))
            registry.promote(session, meta.version)
    finally:
        engine.dispose()
    return meta.version


def stop_container(obj: Any) -> None:
    """What Modal's container runtime does when it stops a container of a class: run its `@modal.exit`
    methods (`.local()` never does; modal/_runtime finds them with the same helper)."""
    from modal._partial_function import _find_callables_for_obj, _PartialFunctionFlags
    from modal._utils.async_utils import synchronizer

    instance = synchronizer._translate_in(obj)._cached_user_cls_instance()
    for exit_method in _find_callables_for_obj(instance, _PartialFunctionFlags.EXIT).values():
        exit_method()
