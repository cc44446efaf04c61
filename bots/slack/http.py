"""HTTP mode: FastAPI routes for Slack's Events API, slash commands and interactivity (one URL)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from starlette.concurrency import run_in_threadpool

EVENTS_PATH = "/slack/events"


def slack_router(app: App, path: str = EVENTS_PATH) -> APIRouter:
    """A router with `POST {path}`; add it to the capbot web server with `web.include_router(...)`.

    bolt verifies the signature and timestamp (401 otherwise) and answers url_verification. Dispatch is
    synchronous, so it runs in a worker thread instead of blocking the server's event loop.
    """
    router = APIRouter()

    @router.post(path, include_in_schema=False)
    async def slack_events(request: Request) -> Response:
        body = await request.body()
        bolt_response = await run_in_threadpool(app.dispatch, to_bolt_request(request, body))
        return to_starlette_response(bolt_response)

    return router
