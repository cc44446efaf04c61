"""The capbot web server: the demo page, a small JSON API, and (when configured) Slack's events endpoint.

The page and the API go through the same `BotCore` as the chat bots (platform "web"), so captions and
corrections made here are stored, rate-limited and exported for training exactly like Slack or Discord ones.
"""

from __future__ import annotations

import asyncio
import secrets
from importlib import resources
from typing import Callable

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

from bots.core import BotCore, Origin, Reply, ReplyKind

USER_COOKIE = "capbot_user"
# HTTP status for each reply kind the core can give to a caption or correction request.
_STATUS = {ReplyKind.REFUSED: 422, ReplyKind.BUSY: 429, ReplyKind.ERROR: 500, ReplyKind.SKIPPED: 422}


class CorrectionIn(BaseModel):
    text: str


def create_web_app(
    core: BotCore,
    *,
    max_image_bytes: int,
    model_version: Callable[[], str],
    extra_routers: tuple[APIRouter, ...] = (),
) -> FastAPI:
    """The FastAPI app: `/` (page), `/api/captions`, `/api/captions/{id}/corrections`, `/healthz`, extra routers."""
    app = FastAPI(title="capbot", docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.add_exception_handler(_ReplyError, reply_error_handler)
    app.include_router(_api_router(core, max_image_bytes, model_version))
    for router in extra_routers:
        app.include_router(router)
    return app


def _api_router(core: BotCore, max_image_bytes: int, model_version: Callable[[], str]) -> APIRouter:
    router = APIRouter()

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return resources.files("capbot").joinpath("static/index.html").read_text(encoding="utf-8")

    @router.get("/healthz")
    def health() -> dict[str, str]:
        return {"status": "ok", "model_version": model_version()}

    @router.post("/api/captions")
    async def caption(request: Request, response: Response, file: UploadFile | None = None) -> dict:
        """Caption an uploaded image (multipart field `file`)."""
        if file is None:
            raise HTTPException(422, "Attach an image in the form field 'file'.")
        data = await _read_capped(file, max_image_bytes)
        origin = _origin(request, response)
        started = asyncio.get_running_loop().time()
        reply = await asyncio.wrap_future(core.caption_requested(origin, image=data))
        _raise_unless(reply, ReplyKind.CAPTION)
        latency_ms = (asyncio.get_running_loop().time() - started) * 1000
        return {"caption_id": reply.caption_id, "text": reply.text, "model_version": reply.model_version,
                "latency_ms": round(latency_ms, 1)}

    @router.post("/api/captions/{caption_id}/corrections", status_code=201)
    async def correct(caption_id: int, body: CorrectionIn, request: Request, response: Response) -> dict:
        """Store a better caption for `caption_id`, or 422 with the reason it was refused."""
        origin = _origin(request, response)
        reply = await asyncio.to_thread(core.submit_correction, caption_id, origin, body.text)
        _raise_unless(reply, ReplyKind.DONE)
        return {"status": "accepted", "message": reply.text}

    return router


async def _read_capped(file: UploadFile, max_bytes: int) -> bytes:
    data = await file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise HTTPException(413, f"The image is larger than the {max_bytes // (1024 * 1024)} MB limit.")
    if not data:
        raise HTTPException(422, "The uploaded file is empty.")
    return data


def _origin(request: Request, response: Response) -> Origin:
    # An anonymous, per-browser id: enough to rate-limit, attribute corrections and honour "forget me".
    user = request.cookies.get(USER_COOKIE)
    if not user or len(user) > 64 or not user.isalnum():
        user = secrets.token_hex(12)
        response.set_cookie(USER_COOKIE, user, httponly=True, samesite="lax", max_age=365 * 24 * 3600)
    return Origin(platform="web", workspace=None, channel="web", user=user)


def _raise_unless(reply: Reply, expected: ReplyKind) -> None:
    if reply.kind is not expected:
        raise _ReplyError(reply)


class _ReplyError(HTTPException):
    def __init__(self, reply: Reply) -> None:
        super().__init__(_STATUS.get(reply.kind, 500), reply.text)
        self.reason = reply.reason


def reply_error_handler(request: Request, exc: _ReplyError) -> JSONResponse:
    """Refusals carry their machine-readable reason beside the message."""
    return JSONResponse({"detail": exc.detail, "reason": exc.reason}, status_code=exc.status_code)
