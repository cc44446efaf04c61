"""The serving containers' state: the GPU captioning class and the web endpoint, each built in
`@modal.enter` and released in `@modal.exit` (capbot/modal/app.py).

A GPU container serves the registry's active version, loaded straight from the models Volume, and
follows the registry (`inference.modal_serving.CaptionServer`). A web container is `capbot run`'s web
app with Slack's events route, assembled by the composition root (`capbot.app`) over a `ModalCaptioner`
(built from the deployed plan) and a blob store that commits its Volume. Both hold the plan's small
database pool and dispose of it when Modal stops them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Callable

from capbot.modal.container import container_engine, container_settings
from capbot.modal.plan import ModalPlan
from capbot.modal.volumes import CommittingBlobStore, VolumeModelFiles

log = logging.getLogger(__name__)


@dataclass
class GpuContainer:
    """One GPU container: the caption server and the database pool it reads the registry with."""

    server: Any  # inference.modal_serving.CaptionServer
    engine: Any

    def close(self) -> None:
        """Release the model and the database connections (the container is stopping)."""
        self.server.captioner.close()
        self.engine.dispose()


def start_caption_server(models_volume: Any, migrate: Callable[[], Any] | None = None) -> GpuContainer:
    """The GPU class's per-container state: the active version loaded, ready to follow the registry."""
    from capbot.app import serving_model
    from capbot.captioning import captioner_spec, local_captioner
    from inference.modal_serving import CaptionServer

    settings, plan = container_settings(), ModalPlan.current()
    spec = replace(captioner_spec(settings), batch_size=plan.batch_size)  # the GPU batch the deploy planned
    engine = container_engine(settings, migrate)
    try:
        files = VolumeModelFiles(models_volume, settings.models_dir)
        server = CaptionServer(
            lambda location: local_captioner(spec, location),
            partial(serving_model, engine, settings),
            prepare=files.prepare,
            poll_s=plan.registry_poll_s, max_image_bytes=settings.max_image_bytes,
            max_image_pixels=settings.max_image_pixels,
        )
    except BaseException:
        engine.dispose()
        raise
    return GpuContainer(server, engine)


@dataclass
class WebContainer:
    """One web container: the ASGI app and the services (bot core, pool) behind it."""

    app: Any
    services: Any  # capbot.app.Services

    def close(self) -> None:
        """Drain the bot core's queue and release the database connections."""
        self.services.close()


def start_web(blobs_volume: Any, migrate: Callable[[], Any] | None = None) -> WebContainer:
    """The web endpoint's app: page, API and (with Slack credentials) /slack/events."""
    from capbot.app import build_web_app, slack_events_router

    settings = container_settings()
    services = container_services(settings, blobs_volume, migrate)
    slack = _slack_app(services)
    routers = (slack_events_router(slack),) if slack is not None else ()
    return WebContainer(build_web_app(services, routers), services)


def container_services(settings: Any, blobs_volume: Any, migrate: Callable[[], Any] | None = None) -> Any:
    """The composition root's services for a web or Discord container: the deployed GPU class as the
    captioner, images committed to the blobs Volume, the plan's small database pool."""
    from capbot.app import build_services
    from capbot.captioning import captioner_spec, modal_captioner

    engine = container_engine(settings, migrate)
    try:
        blobs = CommittingBlobStore(settings.blob_dir, blobs_volume)
        captioner = modal_captioner(settings, captioner_spec(settings))
        return build_services(settings, captioner=captioner, blobs=blobs, engine=engine)
    except BaseException:
        engine.dispose()
        raise


def _slack_app(services: Any) -> Any:
    from capbot.app import build_slack_app

    settings = services.settings
    if (settings.slack_bot_token is None and not settings.slack_install_flow) or settings.slack_signing_secret is None:
        log.info("slack: off on Modal (set CAPBOT_SLACK_SIGNING_SECRET and CAPBOT_SLACK_BOT_TOKEN, or "
                 "CAPBOT_SLACK_CLIENT_ID and CAPBOT_SLACK_CLIENT_SECRET, in the Secret)")
        return None
    if settings.slack_install_flow:
        log.info("slack: on, events at /slack/events, workspaces install at /slack/install")
        return build_slack_app(services)
    if settings.slack_app_token is not None:
        log.info("slack: CAPBOT_SLACK_APP_TOKEN is ignored on Modal; events arrive over HTTP at /slack/events")
    log.info("slack: on, events at /slack/events")
    return build_slack_app(services)
