"""The FastAPI app `capbot run` serves: the demo page, the /v1 API (and the old /api routes), probes, metrics,
and any extra routers (Slack's /slack/events)."""

from __future__ import annotations

from typing import Callable

from fastapi import APIRouter, FastAPI
from fastapi_offline import FastAPIOffline
from sqlalchemy import Engine

from bots.connection import ConnectionTracker
from bots.core import BotCore
from capbot.metrics import Metrics
from capbot.web.admin import admin_router
from capbot.web.context import WebConfig, WebContext
from capbot.web.errors import install_error_handlers
from capbot.web.guard import RequestGuard
from capbot.web.health import health_router
from capbot.web.legacy import legacy_router
from capbot.web.page import page_router
from capbot.web.v1 import v1_router
from storage.blobs import BlobStore

API_DESCRIPTION = """Caption images, read, correct and confirm captions, and see which model serves them. The
operator's routes (/v1/admin: review queue, model versions, promote, rollback) need the admin key.

Errors are JSON `{"error": {"code": ..., "message": ...}}`: `code` is stable (e.g. `not_image`,
`private_address`, `too_large`, `rate_limited`, `link`), `message` is for people. When the server has API
keys configured, send `Authorization: Bearer KEY`."""


DOCS_ASSETS = "/v1/docs/assets"


def create_web_app(
    core: BotCore,
    config: WebConfig,
    *,
    model_version: Callable[[], str],
    engine: Engine | None = None,
    metrics: Metrics | None = None,
    blobs: BlobStore | None = None,
    extra_routers: tuple[APIRouter, ...] = (),
    connections: tuple[ConnectionTracker, ...] = (),
) -> FastAPI:
    """The web app over `core` (platform "web"); `engine` serves readiness and the model registry, `blobs` the
    operator view's thumbnails; `connections` are the platform connections /readyz and /metrics report."""
    ctx = WebContext(core=core, config=config, model_version=model_version, engine=engine,
                     metrics=metrics or Metrics(), blobs=blobs, connections=tuple(connections))
    ctx.metrics.watch_model(model_version)
    ctx.metrics.watch_connections(ctx.connections)
    # Swagger UI at /v1/docs with its script and styles served from the fastapi-offline package, not a CDN:
    # the docs work on a machine without internet, and the page's content security policy stays "self".
    app = FastAPIOffline(title="capbot", version="1", description=API_DESCRIPTION, docs_url="/v1/docs",
                         openapi_url="/v1/openapi.json", redoc_url=None, static_url=DOCS_ASSETS,
                         favicon_url="/favicon.svg")
    install_error_handlers(app)
    routers = (page_router(ctx), health_router(ctx), v1_router(ctx), admin_router(ctx), legacy_router(ctx))
    for router in (*routers, *extra_routers):
        app.include_router(router)
    app.add_middleware(RequestGuard, metrics=ctx.metrics, body_timeout_s=config.body_timeout_s)
    return app
