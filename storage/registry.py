"""The model registry: which trained versions exist and which one serves.

At most one version is active (a partial unique index enforces it in the database too). `promote`
retires the current active version and activates another in one transaction; every activation is
logged in model_activations, and `rollback` walks that log back: it retires the current version,
marks it rolled back, and re-activates the most recent earlier active version not itself rolled back.
Rolling back twice from A -> B -> C gives B, then A.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.clock import utcnow
from storage.errors import InvalidArgument, NothingToRollBack, VersionExists, VersionNotFound
from storage.models import ModelActivation, ModelVersion

log = logging.getLogger(__name__)

_STATUSES_ON_REGISTER = ("candidate", "retired")
_REGISTRY_LOCK_KEY = 0x6361_7062  # "capb": one Postgres advisory lock serialises promote/rollback


@dataclass(frozen=True)
class ModelVersionInfo:
    """A registered model version."""

    id: str
    location: str  # a directory (or hub id) the captioner loads
    status: str  # candidate | active | retired
    parent_id: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    activated_at: datetime | None = None
    retired_at: datetime | None = None
    rolled_back_at: datetime | None = None


def _info(row: ModelVersion) -> ModelVersionInfo:
    return ModelVersionInfo(
        id=row.id,
        location=row.location,
        status=row.status,
        parent_id=row.parent_id,
        metrics=dict(row.metrics or {}),
        created_at=row.created_at,
        activated_at=row.activated_at,
        retired_at=row.retired_at,
        rolled_back_at=row.rolled_back_at,
    )


def register_version(
    session: Session,
    *,
    version_id: str,
    location: str,
    parent_id: str | None = None,
    metrics: dict[str, Any] | None = None,
    status: str = "candidate",
    now: datetime | None = None,
) -> ModelVersionInfo:
    """Add a version as a candidate (or retired); make it serve with `promote`. Raises `VersionExists`."""
    if not version_id or len(version_id) > 128:
        raise InvalidArgument("a model version id must have 1 to 128 characters", reason="bad_version_id")
    if status not in _STATUSES_ON_REGISTER:
        raise InvalidArgument(f"register a version as candidate or retired, not {status!r}; then promote it",
                              reason="bad_status")
    if session.get(ModelVersion, version_id) is not None:
        raise VersionExists(f"model version {version_id!r} is already registered", reason="version_exists")
    row = ModelVersion(id=version_id, location=str(location), parent_id=parent_id, metrics=dict(metrics or {}),
                       status=status, created_at=now or utcnow())
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise VersionExists(f"model version {version_id!r} is already registered", reason="version_exists") from None
    return _info(row)


def update_metrics(session: Session, version_id: str, metrics: dict[str, Any]) -> ModelVersionInfo:
    """Merge `metrics` into a version's metrics (e.g. after evaluating it)."""
    row = _get_row(session, version_id)
    row.metrics = {**(row.metrics or {}), **metrics}
    session.flush()
    return _info(row)


def get_version(session: Session, version_id: str) -> ModelVersionInfo | None:
    """The version with that id, or None."""
    row = session.get(ModelVersion, version_id)
    return None if row is None else _info(row)


def get_active(session: Session) -> ModelVersionInfo | None:
    """The version that serves now, or None (then the configured base model serves)."""
    row = session.scalars(select(ModelVersion).where(ModelVersion.status == "active")).first()
    return None if row is None else _info(row)


def list_versions(session: Session) -> list[ModelVersionInfo]:
    """Every registered version, newest first."""
    rows = session.scalars(select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc()))
    return [_info(row) for row in rows]


def promote(session: Session, version_id: str, *, now: datetime | None = None) -> ModelVersionInfo:
    """Make `version_id` the one active version, retiring the current one, in the caller's transaction.

    Promoting the active version again changes nothing. Raises `VersionNotFound`.
    """
    now = now or utcnow()
    _lock_registry(session)
    target = _get_row(session, version_id, lock=True)
    if target.status == "active":
        return _info(target)
    _retire_active(session, now)
    _activate(session, target, "promote", now)
    return _info(target)


def rollback(session: Session, *, now: datetime | None = None) -> ModelVersionInfo:
    """Re-activate the previous active version; returns it. Raises `NothingToRollBack`."""
    now = now or utcnow()
    _lock_registry(session)
    current = _active_row(session)
    previous = _previous_active(session, exclude=current.id if current else None)
    if previous is None:
        raise NothingToRollBack("there is no earlier model version to roll back to", reason="nothing_to_roll_back")
    if current is not None:
        current.rolled_back_at = now
    _retire_active(session, now)
    _activate(session, previous, "rollback", now)
    return _info(previous)


def _lock_registry(session: Session) -> None:
    # Row locks alone are not enough: a second promote would wait on the old active row, find it
    # retired, and then collide with the first promote's new active row. SQLite's BEGIN IMMEDIATE
    # (storage.db) already serialises writers.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _REGISTRY_LOCK_KEY})


def _get_row(session: Session, version_id: str, *, lock: bool = False) -> ModelVersion:
    row = session.get(ModelVersion, version_id, with_for_update=lock or None, populate_existing=lock)
    if row is None:
        raise VersionNotFound(f"no model version {version_id!r} in the registry; see `capbot models list`",
                              reason="unknown_version")
    return row


def _active_row(session: Session) -> ModelVersion | None:
    statement = select(ModelVersion).where(ModelVersion.status == "active").with_for_update()
    return session.scalars(statement.execution_options(populate_existing=True)).first()


def _previous_active(session: Session, *, exclude: str | None) -> ModelVersion | None:
    statement = (
        select(ModelVersion)
        .join(ModelActivation, ModelActivation.version_id == ModelVersion.id)
        .where(ModelVersion.rolled_back_at.is_(None))
        .order_by(ModelActivation.id.desc())
    )
    if exclude is not None:
        statement = statement.where(ModelVersion.id != exclude)
    return session.scalars(statement.limit(1)).first()


def _retire_active(session: Session, now: datetime) -> None:
    current = _active_row(session)
    if current is not None:
        current.status = "retired"
        current.retired_at = now
        session.flush()  # the old row must leave 'active' before the new one enters (unique index)


def _activate(session: Session, row: ModelVersion, action: str, now: datetime) -> None:
    row.status = "active"
    row.activated_at = now
    row.retired_at = None
    row.rolled_back_at = None
    session.add(ModelActivation(version_id=row.id, action=action, activated_at=now))
    session.flush()
    log.info("model version activated", extra={"version_id": row.id, "action": action})
