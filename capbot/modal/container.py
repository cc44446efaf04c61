"""What every capbot container does first: read its settings, and open a small pool on a migrated database.

Settings come from the container's environment: the plan shipped by the deploy (`capbot.modal.plan`) and
the Modal Secret (CAPBOT_DATABASE_URL, bot tokens, other CAPBOT_* settings). Containers never migrate:
`capbot modal deploy` runs the app's one migration job (`migrate_database`) right after deploying, and a
container that finds the schema behind its code (a deploy with plain `modal deploy`, or a container that
started before that job finished) asks the same job and checks again. So a cold start costs one schema
query, not a migration under a lock.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from capbot.modal.plan import MIGRATION_JOB, ModalPlan
from capbot.modal.volumes import require_postgres

log = logging.getLogger(__name__)


def container_settings(*, database: bool = True) -> Any:
    """Settings inside a container, with logging configured and (for containers that use the database)
    PostgreSQL required: `ModalStorageError` otherwise."""
    from capbot.logs import configure_logging
    from capbot.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    if database:
        require_postgres(settings.database_url, secret_name=ModalPlan.current().secret)
    return settings


def ask_migration_job() -> Any:
    """Run the deployed app's migration job and wait for it (one at a time: it holds an advisory lock)."""
    import modal

    return modal.Function.from_name(ModalPlan.current().app_name, MIGRATION_JOB).remote()


def container_engine(settings: Any, migrate: Callable[[], Any] | None = None) -> Any:
    """An engine with the plan's small pool (`db_pool_size` connections, no overflow) on a database at this
    code's schema; `migrate` (default: the app's migration job) is asked once when the schema is behind."""
    from storage import db

    engine = db.create_engine_for(settings.database_url, pool_size=ModalPlan.current().db_pool_size)
    try:
        if db.current_revision(engine) != db.head_revision():
            log.warning("the database schema is behind this deployment; asking the migration job")
            (migrate or ask_migration_job)()
            db.require_current_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def migrate_database() -> dict:
    """The migration job's body: migrate the database to this code's newest revision (idempotent)."""
    from storage import db

    settings = container_settings()
    revision = db.upgrade(settings.database_url)
    return {"revision": revision}
