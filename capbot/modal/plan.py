"""capbot's layout on Modal: names, mount paths and the containers' environment, derived from `Settings`.

Plain data with no `modal` import, shared by the Modal app module, `capbot modal ...`, the modal captioner
and the tests. Containers re-import the app module, so the plan chosen where `capbot modal deploy` ran travels into
every container as one environment variable (`PLAN_ENV`); a container never re-derives names from
whatever else its environment holds (a Secret may carry other CAPBOT_* settings).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

DATA_ROOT = "/data"  # CAPBOT_DATA_DIR in every container; each Volume is mounted at DATA_ROOT/<role>
VOLUME_ROLES = ("models", "datasets", "runs", "blobs")  # runs: checkpoints and TensorBoard logs
CAPTION_CLASS = "GpuCaptioner"  # the class name in capbot/modal/app.py; Modal registers it under this name
MIGRATION_JOB = "migrate_database"  # the function in capbot/modal/app.py that migrates the database
PLAN_ENV = "CAPBOT_MODAL_PLAN"
REQUIRED_SECRET_KEYS = ("CAPBOT_DATABASE_URL",)


@dataclass(frozen=True)
class ModalPlan:
    """Everything the Modal definitions take from settings (see the README's CAPBOT_MODAL_* rows)."""

    app_name: str = "capbot"
    secret: str = "capbot"
    volume_prefix: str = "capbot"
    gpu: str = "L4"  # captioning class
    train_gpu: str = "L40S"  # training, evaluation, scheduled retraining
    batch_size: int = 32  # @modal.batched max_batch_size
    batch_wait_ms: int = 50
    scaledown_window_s: int = 300
    min_containers: int = 0  # GPU captioning containers kept warm
    max_containers: int = 5  # GPU captioning containers at most (a cost ceiling; callers queue beyond it)
    web_min_containers: int = 0  # web endpoint containers kept warm
    retrain_cron: str = "0 3 * * 0"  # "" = no schedule
    sweep_cron: str = "17 * * * *"  # the retention sweep; "" = no schedule
    call_timeout_s: float = 120.0  # one caption request's whole wait, under Modal's 150 s web request limit
    registry_poll_s: float = 30.0  # how often a warm GPU container checks the registry (throttle)
    db_pool_size: int = 2  # PostgreSQL connections each container keeps at most (no overflow)

    @classmethod
    def from_settings(cls, settings: Any) -> "ModalPlan":
        """The plan for a deployment from `Settings` (the CAPBOT_MODAL_* fields)."""
        return cls(
            app_name=settings.modal_app_name, secret=settings.modal_secret,
            volume_prefix=settings.modal_volume_prefix, gpu=settings.modal_gpu, train_gpu=settings.modal_train_gpu,
            batch_size=settings.modal_batch_size, batch_wait_ms=settings.modal_batch_wait_ms,
            scaledown_window_s=settings.modal_scaledown_window_s, min_containers=settings.modal_min_containers,
            max_containers=settings.modal_max_containers, web_min_containers=settings.modal_web_min_containers,
            retrain_cron=settings.modal_retrain_cron, sweep_cron=settings.modal_sweep_cron,
            call_timeout_s=settings.modal_call_timeout_s,
            registry_poll_s=settings.registry_poll_s, db_pool_size=settings.modal_db_pool_size,
        )

    @classmethod
    def current(cls, settings_factory: Any = None) -> "ModalPlan":
        """Inside a container: the plan shipped by the deploy; elsewhere: the plan from settings."""
        shipped = os.environ.get(PLAN_ENV)
        if shipped:
            return cls.from_json(shipped)
        if settings_factory is None:
            from capbot.settings import get_settings as settings_factory
        return cls.from_settings(settings_factory())

    def to_json(self) -> str:
        """The plan as the JSON text containers receive in `PLAN_ENV`."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModalPlan":
        """Parse `to_json`'s output, ignoring fields this version does not know."""
        data = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def volume_name(self, role: str) -> str:
        """The Modal Volume holding `role` (one of `VOLUME_ROLES`), e.g. capbot-models."""
        if role not in VOLUME_ROLES:
            raise ValueError(f"unknown volume role {role!r}")
        return f"{self.volume_prefix}-{role}"

    def container_env(self) -> dict[str, str]:
        """Environment every container starts with (never a secret: those come from the Modal Secret)."""
        return {"CAPBOT_DATA_DIR": DATA_ROOT, PLAN_ENV: self.to_json()}


def mount_path(role: str) -> str:
    """Where the Volume of `role` is mounted in every container that uses it, e.g. /data/models.

    The same paths as the single-machine layout under CAPBOT_DATA_DIR, so registry locations
    (/data/models/<version>) and blob paths mean the same thing in every container.
    """
    if role not in VOLUME_ROLES:
        raise ValueError(f"unknown volume role {role!r}")
    return f"{DATA_ROOT}/{role}"
