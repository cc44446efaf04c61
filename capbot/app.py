"""The composition root: the only place that builds the store, captioner, bot core, bots (Slack, Discord),
web server and retraining configuration from `Settings` and wires them together. `capbot run`
(`capbot.serve`, the CLI) and the Modal containers (`capbot.modal`) both assemble through it; everything
else takes plain arguments."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from sqlalchemy import Engine

from bots.core import BotCore
from bots.fetch import fetch_image_bytes
from bots.image_hold import ImageHold
from bots.store import SqlBotStore
from capbot.captioning import captioner_spec, modal_captioner, serving_captioner
from capbot.follow import RegistryFollower
from capbot.metrics import Metrics
from capbot.settings import Settings
from inference.decode_budget import set_shared_budget
from inference.spec import CaptionerSpec
from inference.types import Captioner
from storage import db, events, registry, retention
from storage.blobs import LocalBlobStore

if TYPE_CHECKING:
    from training.data.screen import ScreenRules
    from training.retrain import RetrainConfig

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything long-lived that `capbot run` (and tests) need, built once from settings."""

    settings: Settings
    engine: Engine
    blobs: LocalBlobStore
    spec: CaptionerSpec  # how captions are made; the scheduled retraining's gate scores with it too
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


def build_captioner(settings: Settings, spec: CaptionerSpec, model: str) -> Captioner:
    """The configured `Captioner` made as `spec` says: in-process on `model` (default), or the deployed Modal
    class, which follows the registry itself (so no `RegistryFollower` is started for it) and is looked up
    at once, so missing credentials or a missing deployment stop `capbot run` with one line."""
    if settings.captioner == "modal":
        return modal_captioner(settings, spec).check()
    return serving_captioner(settings, spec, model)


EVENT_MEMORY = timedelta(days=7)  # Slack and Discord stop retrying a delivery within hours


def forget_old_events(engine: Engine, now: datetime | None = None) -> int:
    """Drop processed-event ids older than `EVENT_MEMORY` so the table stays small; returns the count."""
    cutoff = (now or datetime.now(timezone.utc)) - EVENT_MEMORY
    with db.session_scope(engine) as session:
        return events.prune_processed_events(session, older_than=cutoff)


def sweep_images(settings: Settings, engine: Engine, blobs: Any, *, dry_run: bool = False,
                 now: datetime | None = None) -> retention.SweepResult:
    """Remove the image files past their retention (docs/privacy.md): the embedded schedule of `capbot run`,
    the Modal Cron and `capbot sweep-images` all run this."""
    with db.session_scope(engine) as session:
        return retention.sweep_images(session, blobs, retention_days=settings.image_retention_days, now=now,
                                      dry_run=dry_run)


def start_sweep(settings: Settings, engine: Engine, blobs: Any):  # -> BackgroundScheduler | None
    """Start the embedded retention sweep on CAPBOT_RETENTION_SWEEP_CRON (job id "capbot-retention_sweep"), or
    return None when the setting is empty."""
    if not settings.retention_sweep_cron:
        return None
    from training.scheduler import start_scheduler

    return start_scheduler(settings.retention_sweep_cron, lambda: sweep_images(settings, engine, blobs),
                           name="retention_sweep")


def build_services(settings: Settings, *, captioner: Captioner | None = None,
                   blobs: LocalBlobStore | None = None, engine: Engine | None = None) -> Services:
    """Migrate the database, open the blob store, load the captioner and start the bot core's workers.

    `blobs` replaces the directory store of settings.blob_dir (on Modal: one that commits its Volume).
    `engine`: an engine the caller opened on an already migrated database (on Modal: a container's small
    pool; the deploy migrates once), used instead of migrating and opening one here.
    """
    set_shared_budget(settings.decode_budget_megapixels)  # memory of concurrent image decodes (issue 22)
    if engine is None:
        db.upgrade(settings.database_url)
        engine = db.create_engine_for(settings.database_url)
    forget_old_events(engine)
    blobs = blobs or LocalBlobStore(settings.blob_dir)
    model = serving_model(engine, settings)
    spec = captioner_spec(settings)
    captioner = captioner or build_captioner(settings, spec, model)
    metrics = Metrics()
    core = BotCore(
        captioner,
        SqlBotStore(engine, blobs, auto_caption_default=settings.auto_caption_default,
                    training_consent_default=settings.training_consent_default,
                    image_retention_days=settings.image_retention_days,
                    hold=ImageHold(ttl_s=settings.image_hold_minutes * 60)),
        fetch_url=partial(
            fetch_image_bytes,
            max_bytes=settings.max_image_bytes,
            timeout_s=settings.fetch_timeout_s,
            max_redirects=settings.fetch_max_redirects,
        ),
        options=spec.options,
        workers=settings.workers,
        queue_size=settings.queue_size,
        rate_limit_per_minute=settings.rate_limit_per_minute,
        correction_rate_limit_per_minute=settings.correction_rate_limit_per_minute,
        low_confidence=settings.low_confidence,
        observer=metrics,
    )
    metrics.watch_queue(core.queue_depth)
    services = Services(settings, engine, blobs, spec, captioner, core, metrics=metrics)
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
                          blobs=services.blobs, extra_routers=tuple(extra_routers), connections=tuple(connections))


# --- the bots ------------------------------------------------------------------------------------------------

def build_slack_app(services: Services) -> Any:
    """The Slack (bolt) app over the services' core: one workspace with CAPBOT_SLACK_BOT_TOKEN (the signing
    secret too for HTTP events, not for Socket Mode), or any that installs it with CAPBOT_SLACK_CLIENT_ID and
    CAPBOT_SLACK_CLIENT_SECRET (installations kept in the services' database)."""
    from bots.slack.app import create_app
    from bots.slack.install import InstallFlow

    s = services.settings
    secret = s.slack_signing_secret.get_secret_value() if s.slack_signing_secret else ""
    if s.slack_install_flow:
        install = InstallFlow(client_id=s.slack_client_id, client_secret=s.slack_client_secret.get_secret_value(),
                              engine=services.engine, public_url=s.public_url)
        token = None
    else:
        install, token = None, s.slack_bot_token.get_secret_value()
    return create_app(services.core, bot_token=token, install=install, signing_secret=secret,
                      api_url=s.slack_api_url, max_image_bytes=s.max_image_bytes, fetch_timeout_s=s.fetch_timeout_s)


def slack_events_router(slack_app: Any) -> Any:
    """The web router that receives Slack's HTTP events at /slack/events for `slack_app`."""
    from bots.slack.http import slack_router

    return slack_router(slack_app)


async def run_discord(services: Services, stop: asyncio.Event, tracker: Any = None) -> None:
    """Run the Discord bot over the services' core until `stop` is set (needs CAPBOT_DISCORD_TOKEN),
    reporting its connection to `tracker` (a `bots.connection.ConnectionTracker`; None: its own)."""
    from bots.discord.run import run_discord_bot

    s = services.settings
    await run_discord_bot(
        services.core, s.discord_token.get_secret_value(), max_image_bytes=s.max_image_bytes,
        api_url=s.discord_api_url, gateway_url=s.discord_gateway_url,
        message_content=s.discord_message_content, stop=stop, tracker=tracker, shard_count=s.discord_shards,
    )


# --- retraining ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetrainOptions:
    """One run's choices (the CLI's flags, the Modal job's resume); None keeps the setting or
    `RetrainConfig`'s default."""

    min_feedback: int | None = None
    base_data: Path | None = None
    base_eval_split: str | None = None
    feedback_fraction: float | None = None
    cider_tolerance: float | None = None
    epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    renames: bool = True  # False: find no new renames (those the active version learned still apply)
    dry_run: bool = False
    resume: bool = False  # continue an interrupted run from its last checkpoint (a preempted Modal job)
    checkpoint_every: int | None = None  # training steps between checkpoints (None: only at the end)


def retrain_config(settings: Settings, engine: Engine, options: RetrainOptions = RetrainOptions(),
                   spec: CaptionerSpec | None = None) -> RetrainConfig:
    """The `RetrainConfig` for `settings` and this run's `options`: the one place Settings become one, for
    `capbot retrain`, the embedded schedule of `capbot run` and the Modal Cron alike. The gate scores with
    `spec`, the server's when it runs beside one, else the one settings give."""
    from training.data.renames import RenameRules
    from training.retrain import RetrainConfig

    # Choices without a setting: unless given, RetrainConfig's defaults apply.
    choices = {"base_eval_split": options.base_eval_split, "epochs": options.epochs,
               "learning_rate": options.learning_rate, "batch_size": options.batch_size,
               "checkpoint_every": options.checkpoint_every}
    return RetrainConfig(
        engine=engine,
        blobs=LocalBlobStore(settings.blob_dir or settings.data_dir / "blobs"),
        models_dir=settings.models_dir,
        runs_dir=settings.runs_dir,
        base_model=settings.model,
        base_data=_first(options.base_data, settings.retrain_base_data),
        min_feedback=_first(options.min_feedback, settings.retrain_min_feedback),
        feedback_fraction=_first(options.feedback_fraction, settings.retrain_feedback_fraction),
        cider_tolerance=_first(options.cider_tolerance, settings.retrain_cider_tolerance),
        rename_rules=RenameRules(min_users=settings.retrain_rename_min_users) if options.renames else None,
        screen_rules=screen_rules(settings),
        min_users=settings.retrain_min_users,
        consent_default=settings.training_consent_default,
        captioner=spec or captioner_spec(settings),
        dry_run=options.dry_run,
        resume=options.resume,
        **{name: value for name, value in choices.items() if value is not None},
    )


def screen_rules(settings: Settings) -> ScreenRules:
    """The junk rules from settings: the same for retraining and `capbot feedback export`."""
    from training.data.screen import ScreenRules

    return ScreenRules(max_images_per_user=settings.retrain_max_images_per_user,
                       spam_min_images=settings.retrain_spam_min_images)


def _first(option: Any, setting: Any) -> Any:
    return setting if option is None else option  # `or` would take a tolerance of 0.0 for "unset"
