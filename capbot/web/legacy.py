"""The first API's routes, kept so existing callers do not break: `/api/captions` and its corrections.

They run the /v1 code and answer in the old shapes (`caption_id`, `latency_ms`; errors as
`{"detail": ..., "reason": ...}`). New callers should use /v1; these are marked deprecated in the schema.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from capbot.web.context import WebContext, request_options
from capbot.web.errors import LegacyErrorBody
from capbot.web.identity import Caller
from capbot.web.schemas import CorrectionIn
from capbot.web.v1 import CAPTION_REQUEST_BODY, caller_dependency, caption_request, correct

LEGACY_ERRORS: dict[int | str, dict] = {
    "4XX": {"model": LegacyErrorBody, "description": "Refused; `reason` is the same code /v1 gives as error.code."},
    "5XX": {"model": LegacyErrorBody, "description": "Busy, or a bug on the server."},
}


def legacy_router(ctx: WebContext) -> APIRouter:
    """`/api/captions`, `/api/captions/{id}/corrections`, and redirects from the old docs addresses."""
    router = APIRouter(prefix="/api", tags=["deprecated"], deprecated=True)
    caller = Depends(caller_dependency(ctx))

    @router.post("/captions", openapi_extra=CAPTION_REQUEST_BODY, responses=LEGACY_ERRORS)
    async def caption(request: Request, who: Caller = caller) -> dict:
        """Deprecated: use POST /v1/captions. Answers `{caption_id, text, model_version, latency_ms}`."""
        reply, total_ms = await caption_request(ctx, request, who, request_options(ctx.default_options, None, None, None))
        return {"caption_id": reply.caption_id, "text": reply.text, "model_version": reply.model_version,
                "latency_ms": round(total_ms, 1)}

    @router.post("/captions/{caption_id}/corrections", status_code=201, responses=LEGACY_ERRORS)
    async def correction(caption_id: int, body: CorrectionIn, who: Caller = caller) -> dict:
        """Deprecated: use POST /v1/captions/{id}/corrections."""
        reply = await correct(ctx, who, caption_id, body.text)
        return {"status": "accepted", "message": reply.text}

    @router.get("/docs", include_in_schema=False)
    def docs() -> RedirectResponse:
        return RedirectResponse("/v1/docs", status_code=308)

    @router.get("/openapi.json", include_in_schema=False)
    def schema() -> RedirectResponse:
        return RedirectResponse("/v1/openapi.json", status_code=308)

    return router
