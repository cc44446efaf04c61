"""Probes and metrics: `/healthz` (alive), `/readyz` (model loaded, database reachable), `/metrics` (Prometheus)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from capbot.web.context import WebContext
from capbot.web.schemas import CheckOut, HealthOut, PlatformOut, ReadyOut


def health_router(ctx: WebContext) -> APIRouter:
    """Unauthenticated routes for load balancers, orchestrators and scrapers."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", response_model=HealthOut)
    def health() -> HealthOut:
        """The process is up and serving HTTP."""
        return HealthOut(status="ok", model_version=ctx.model_version())

    @router.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut, "description": "Not ready."}})
    async def ready() -> JSONResponse:
        """Ready for caption requests: the captioner has a model loaded and the database answers at the
        schema version this capbot needs. 503 with the failing check otherwise. `platforms` says where each
        chat platform connection stands (reported, not part of the verdict)."""
        checks = {"model": _check_model(ctx), "database": await asyncio.to_thread(_check_database, ctx)}
        ok = all(check.ok for check in checks.values())
        body = ReadyOut(status="ready" if ok else "not_ready", checks=checks, platforms=_platforms(ctx))
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @router.get("/metrics", response_class=Response,
                responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}})
    def metrics() -> Response:
        """Requests by route and status, client aborts and timeouts, caption latency, queue depth, captions by
        platform, corrections accepted and refused by reason, the serving model version, rate-limit refusals,
        platform connections (up or not, failed attempts)."""
        return Response(ctx.metrics.render(), media_type=ctx.metrics.content_type)

    return router


def _platforms(ctx: WebContext) -> dict[str, PlatformOut]:
    states = (tracker.state() for tracker in ctx.connections)
    return {s.platform: PlatformOut(state=s.state, detail=s.detail, failures=s.failures, since=s.since) for s in states}


def _check_model(ctx: WebContext) -> CheckOut:
    try:
        version = ctx.model_version()
    except Exception as exc:  # a captioner that cannot say its version cannot caption either
        return CheckOut(ok=False, detail=f"the captioner is not ready: {exc}")
    return CheckOut(ok=bool(version), detail=f"serving {version}" if version else "no model loaded")


def _check_database(ctx: WebContext) -> CheckOut:
    if ctx.engine is None:
        return CheckOut(ok=False, detail="no database configured")
    from storage import db
    from storage.errors import DatabaseUnavailable

    try:
        db.require_current_schema(ctx.engine)
    except DatabaseUnavailable as exc:
        return CheckOut(ok=False, detail=exc.message)
    except Exception as exc:  # e.g. a server that accepts the connection and then fails the query
        return CheckOut(ok=False, detail=f"the database did not answer ({type(exc).__name__})")
    return CheckOut(ok=True, detail=f"schema at {db.head_revision()}")
