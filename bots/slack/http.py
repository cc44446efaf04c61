"""HTTP mode: FastAPI routes for Slack's Events API, slash commands and interactivity (one URL), and, with the
install flow (bots.slack.install), bolt's install page and OAuth redirect."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from slack_bolt.oauth import OAuthFlow
from starlette.concurrency import run_in_threadpool

EVENTS_PATH = "/slack/events"
UNSIGNED = {"error": {"code": "unauthorized", "message": "The request has no valid Slack signature (X-Slack-Signature "
                      "and a recent X-Slack-Request-Timestamp, made with the app's signing secret)."}}


def slack_router(app: App, path: str = EVENTS_PATH) -> APIRouter:
    """A router with `POST {path}`; add it to the capbot web server with `web.include_router(...)`.

    bolt verifies the signature and timestamp and answers url_verification. A request it refuses gets a
    401 in the web API's error shape (`{"error": {"code": "unauthorized", "message": ...}}`). Dispatch is
    synchronous, so it runs in a worker thread instead of blocking the server's event loop.
    """
    router = APIRouter()

    @router.post(path, include_in_schema=False)
    async def slack_events(request: Request) -> Response:
        body = await request.body()
        bolt_response = await run_in_threadpool(app.dispatch, to_bolt_request(request, body))
        if bolt_response.status == 401:
            return JSONResponse(UNSIGNED, status_code=401)
        return to_starlette_response(bolt_response)

    if app.oauth_flow is not None:
        _add_install_routes(router, app.oauth_flow)
    return router


def _add_install_routes(router: APIRouter, flow: OAuthFlow) -> None:
    """GET install_path (the "Add to Slack" page) and GET redirect_uri_path (Slack's answer), as bolt's own
    adapters route them; both touch the database, so they run in a worker thread."""

    @router.get(flow.install_path, include_in_schema=False)
    async def slack_install(request: Request) -> Response:
        bolt_request = to_bolt_request(request, await request.body())
        return to_starlette_response(await run_in_threadpool(flow.handle_installation, bolt_request))

    @router.get(flow.redirect_uri_path, include_in_schema=False)
    async def slack_oauth_redirect(request: Request) -> Response:
        bolt_request = to_bolt_request(request, await request.body())
        return to_starlette_response(await run_in_threadpool(flow.handle_callback, bolt_request))
