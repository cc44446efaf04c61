"""The composition root: the only place that builds the store, captioner, bot core, bots, web server and
schedule from `Settings` and wires them together. Everything else takes plain arguments."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Callable

from sqlalchemy import Engine

from bots.core import BotCore
from bots.fetch import fetch_image_bytes
from bots.store import SqlBotStore
from capbot.captioning import generation_options, modal_captioner, serving_captioner
from capbot.follow import RegistryFollower
from capbot.metrics import Metrics
from capbot.settings import Settings
from inference.decode_budget import set_shared_budget
from inference.types import Captioner, GenerationOptions
from storage import db, events, registry
from storage.blobs import LocalBlobStore

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything long-lived that `capbot run` (and tests) need, built once from settings."""

    settings: Settings
    engine: Engine
    blobs: LocalBlobStore
    captioner: Captioner
    core: BotCore
    closers: list[Callable[[], None]] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)

    def close(self) -> None:
        """Stop the workers and release resources, newest first."""
        self.core.close()
        for close in reversed(self.closers):
            close()
        self.engine.dispose()


def serving_model(engine: Engine, settings: Settings) -> str:
    """The registry's active version when there is one, otherwise the configured base model."""
    with db.session_scope(engine) as session:
        active = registry.get_active(session)
    return active.location if active else settings.model


def build_captioner(settings: Settings, model: str) -> Captioner:
    """The configured `Captioner`: in-process on `model` (default), or the deployed Modal class, which
    follows the registry itself (so no `RegistryFollower` is started for it) and is looked up at once, so
    missing credentials or a missing deployment stop `capbot run` with one line."""
    if settings.captioner == "modal":
        return modal_captioner(settings).check()
    return serving_captioner(settings, model)


def serving_options(settings: Settings) -> GenerationOptions:
    """What the bots and the web caption with: the settings' defaults, offering `num_alternatives` other
    captions, with enough beams for them (alternatives are the beam search's n-best), and scoring each
    caption's confidence on `confidence_views` views of the image (None: the captioner's device decides,
    `inference.views.views_for`)."""
    alternatives = settings.num_alternatives
    base = generation_options(settings)
    return replace(base, num_beams=max(base.num_beams, alternatives + 1), num_alternatives=alternatives,
                   confidence_views=settings.confidence_views)


EVENT_MEMORY = timedelta(days=7)  # Slack and Discord stop retrying a delivery within hours


def forget_old_events(engine: Engine, now: datetime | None = None) -> int:
    """Drop processed-event ids older than `EVENT_MEMORY` so the table stays small; returns the count."""
    cutoff = (now or datetime.now(timezone.utc)) - EVENT_MEMORY
    with db.session_scope(engine) as session:
        return events.prune_processed_events(session, older_than=cutoff)


def build_services(settings: Settings, *, captioner: Captioner | None = None,
                   blobs: LocalBlobStore | None = None) -> Services:
    """Migrate the database, open the blob store, load the captioner and start the bot core's workers.

    `blobs` replaces the directory store of settings.blob_dir (on Modal: one that commits its Volume).
    """
    set_shared_budget(settings.decode_budget_megapixels)  # issue 22: memory of concurrent image decodes
    db.upgrade(settings.database_url)
    engine = db.create_engine_for(settings.database_url)
    forget_old_events(engine)
    blobs = blobs or LocalBlobStore(settings.blob_dir)
    model = serving_model(engine, settings)
    captioner = captioner or build_captioner(settings, model)
    metrics = Metrics()
    core = BotCore(
        captioner,
        SqlBotStore(engine, blobs, auto_caption_default=settings.auto_caption_default),
        fetch_url=partial(
            fetch_image_bytes,
            max_bytes=settings.max_image_bytes,
            timeout_s=settings.fetch_timeout_s,
            max_redirects=settings.fetch_max_redirects,
        ),
        options=serving_options(settings),
        workers=settings.workers,
        queue_size=settings.queue_size,
        rate_limit_per_minute=settings.rate_limit_per_minute,
        correction_rate_limit_per_minute=settings.correction_rate_limit_per_minute,
        low_confidence=settings.low_confidence,
        observer=metrics,
    )
    metrics.watch_queue(core.queue_depth)
    services = Services(settings, engine, blobs, captioner, core, metrics=metrics)
    if hasattr(captioner, "reload"):
        follower = RegistryFollower(captioner, partial(serving_model, engine, settings), current=model,
                                    interval_s=settings.registry_poll_s).start()
        services.closers.append(follower.stop)
    return services


def build_web_app(services: Services, extra_routers: tuple = (), connections: tuple = ()):
    """The web app (page, API, metrics) over the services' core, with `extra_routers` (e.g. /slack/events)
    and the platform `connections` (`bots.connection.ConnectionTracker`) /readyz and /metrics report;
    `capbot run` and the Modal web endpoint serve the same app."""
    from capbot.web import WebConfig, create_web_app

    return create_web_app(services.core, WebConfig.from_settings(services.settings), engine=services.engine,
                          model_version=lambda: services.captioner.model_version, metrics=services.metrics,
                          extra_routers=tuple(extra_routers), connections=tuple(connections))
