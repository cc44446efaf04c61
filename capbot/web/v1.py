"""The /v1 API: caption (file, raw bytes or URL), read a caption, correct or confirm it, list model versions."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import Engine

from bots.core import Reply, ReplyKind
from capbot.web.context import WebContext, request_options
from capbot.web.errors import ApiError, error_responses, reply_error
from capbot.web.identity import Caller, identify
from capbot.web.intake import UrlRequest, read_caption_source
from capbot.web.schemas import (
    CaptionOut,
    ConfirmationOut,
    CorrectionIn,
    CorrectionOut,
    ModelsOut,
    ModelVersionOut,
    StoredCaptionOut,
)

CAPTION_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "description": "The image as a multipart upload (field `file`), as the raw body with an image/* "
                       "Content-Type, or JSON naming a URL.",
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                               "properties": {"file": {"type": "string", "format": "binary"}}}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": UrlRequest.model_json_schema()},
        },
    }
}


def caller_dependency(ctx: WebContext):  # type: ignore[no-untyped-def]
    """A FastAPI dependency giving the request's `Caller` (401 when keys are configured and none is valid)."""

    def caller(request: Request) -> Caller:
        return identify(request, api_keys=ctx.config.api_keys, trusted_proxies=ctx.config.trusted_proxies)

    return caller


async def caption_request(ctx: WebContext, request: Request, caller: Caller, options) -> tuple[Reply, float]:  # type: ignore[no-untyped-def]
    """Read the image or URL from `request`, caption it through the core; (reply, total ms) or an ApiError."""
    started = time.perf_counter()
    source = await read_caption_source(request, ctx.config.max_image_bytes)
    future = ctx.core.caption_requested(ctx.origin(caller), image=source.image, url=source.url, options=options)
    reply = await asyncio.wrap_future(future)
    if reply.kind is not ReplyKind.CAPTION:
        raise reply_error(reply)
    return reply, (time.perf_counter() - started) * 1000


async def correct(ctx: WebContext, caller: Caller, caption_id: int, text: str) -> Reply:
    """Store the caller's correction of their own caption, or raise the refusal as an ApiError."""
    await ctx.owned_caption(caller, caption_id)
    reply = await asyncio.to_thread(ctx.core.submit_correction, caption_id, ctx.origin(caller), text)
    if reply.kind is not ReplyKind.DONE:
        raise reply_error(reply)
    return reply


def v1_router(ctx: WebContext) -> APIRouter:
    """Routes under /v1 (all need a key when API keys are configured)."""
    router = APIRouter(prefix="/v1", tags=["v1"])
    caller = Depends(caller_dependency(ctx))
    limits = ctx.config

    @router.post("/captions", status_code=201, response_model=CaptionOut, openapi_extra=CAPTION_REQUEST_BODY,
                 responses=error_responses(400, 401, 408, 413, 415, 422, 429, 500, 503))
    async def create_caption(
        request: Request,
        response: Response,
        who: Caller = caller,
        beams: int | None = Query(None, ge=1, le=limits.max_beams, description="Beam search width (1 = greedy)."),
        max_tokens: int | None = Query(None, ge=1, le=limits.max_new_tokens, description="Longest caption, in tokens."),
        alternatives: int | None = Query(None, ge=0, le=limits.max_beams - 1,
                                         description="Other captions to return (needs beams > alternatives)."),
    ) -> CaptionOut:
        """Caption an image: upload it (multipart field `file`), send it raw (`Content-Type: image/...`), or send
        `{"url": "https://..."}`. Rate-limited per caller; sizes are capped while reading."""
        options = request_options(ctx.default_options, beams, max_tokens, alternatives)
        reply, total_ms = await caption_request(ctx, request, who, options)
        response.headers["Location"] = f"/v1/captions/{reply.caption_id}"
        return CaptionOut(
            id=reply.caption_id, text=reply.text, alternatives=list(reply.alternatives), confidence=reply.confidence,
            unsure=reply.unsure, model_version=reply.model_version,
            timings_ms={**{k: round(v, 2) for k, v in reply.timings_ms.items()}, "total": round(total_ms, 2)},
        )

    @router.get("/captions/{caption_id}", response_model=StoredCaptionOut, responses=error_responses(401, 404, 422))
    async def get_caption(caption_id: int, who: Caller = caller) -> StoredCaptionOut:
        """One of the caller's captions (made with the same API key, or from the same address without keys)."""
        info = await ctx.owned_caption(who, caption_id)
        return StoredCaptionOut(
            id=info.id, text=info.text, alternatives=list(info.alternatives), confidence=info.confidence,
            unsure=ctx.core.is_unsure(info.confidence), model_version=info.model_version, created_at=info.created_at,
        )

    @router.post("/captions/{caption_id}/corrections", status_code=201, response_model=CorrectionOut,
                 responses=error_responses(401, 404, 408, 422, 429, 500))
    async def create_correction(caption_id: int, body: CorrectionIn, who: Caller = caller) -> CorrectionOut:
        """Suggest a better caption for one of the caller's captions. A caller holds one correction per image:
        a newer one replaces the older. Refusals say why (`error.code`: link, mention, too_short, ...)."""
        reply = await correct(ctx, who, caption_id, body.text)
        return CorrectionOut(caption_id=caption_id, status="accepted", message=reply.text)

    @router.post("/captions/{caption_id}/confirmations", status_code=201, response_model=ConfirmationOut,
                 responses=error_responses(401, 404, 429))
    async def create_confirmation(caption_id: int, who: Caller = caller) -> ConfirmationOut:
        """Say that one of the caller's captions is right. A confirmation is feedback like a correction:
        retraining learns from it and the review queue ranks the caption lower. It replaces the caller's
        correction of the image, and a later correction replaces it."""
        await ctx.owned_caption(who, caption_id)
        reply = await asyncio.to_thread(ctx.core.confirm_caption, caption_id, ctx.origin(who))
        if reply.kind is not ReplyKind.DONE:
            raise reply_error(reply)
        return ConfirmationOut(caption_id=caption_id, status="accepted", message=reply.text)

    @router.get("/models", response_model=ModelsOut, responses=error_responses(401, 503))
    async def list_models(who: Caller = caller) -> ModelsOut:
        """The model version serving now and the registry's versions (the active one marked)."""
        if ctx.engine is None:
            raise ApiError(503, "no_database", "This server has no model registry.")
        versions = await asyncio.to_thread(_versions, ctx.engine)
        active = next((v.id for v in versions if v.status == "active"), None)
        return ModelsOut(serving=ctx.model_version(), active=active, versions=versions)

    return router


def _versions(engine: Engine) -> list[ModelVersionOut]:
    from storage import db, registry

    with db.session_scope(engine) as session:
        return [
            ModelVersionOut(id=v.id, status=v.status, parent_id=v.parent_id, created_at=v.created_at,
                            activated_at=v.activated_at, metrics=dict(v.metrics or {}))
            for v in registry.list_versions(session)
        ]
