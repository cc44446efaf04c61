"""The operator's API under /v1/admin, behind the admin key (or the API keys): what `capbot feedback queue` and
`capbot models` do, for the operator page (/operator).

- the review queue, with a thumbnail of each image, to correct or confirm its caption from there;
- the model versions with their gate metrics, to plot over time;
- promote and rollback.

An operator's corrections and confirmations are their own answers (user "admin:<hash of the key>" on the
web platform), one per image like anyone's; they go through the same core as the page's, under the same
validation and per-user limit.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import re

from fastapi import APIRouter, Depends, Query, Request, Response
from PIL import Image

from bots.core import ReplyKind
from capbot.web.context import WebContext
from capbot.web.errors import ApiError, ErrorBody, error_responses, reply_error
from capbot.web.identity import Caller, bearer_key, pseudonym
from capbot.web.schemas import (
    AdminModelsOut,
    ConfirmationOut,
    CorrectionIn,
    CorrectionOut,
    QueueItemOut,
    QueueOut,
    VersionPoint,
)
from storage.errors import StorageError

THUMBNAIL_PX = 320
_SHA256 = re.compile(r"[0-9a-f]{64}")
_STATUS_BY_REASON = {"unknown_version": 404, "nothing_to_roll_back": 409, "bad_limit": 422}
_OPERATOR_ERRORS = {  # statuses only the operator's API answers
    403: "No key opens the operator view on this server (`error.code` operator_off).",
    409: "There is no earlier version to roll back to.",
}


def _responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses=` for these statuses, the operator's own among them."""
    shared = error_responses(*(s for s in statuses if s not in _OPERATOR_ERRORS))
    own = {s: {"model": ErrorBody, "description": _OPERATOR_ERRORS[s]} for s in statuses if s in _OPERATOR_ERRORS}
    return {**shared, **own}


def identify_operator(request: Request, admin_keys: tuple[str, ...]) -> Caller:
    """The operator calling, by their key; 403 when no key opens the operator view, 401 without a valid one."""
    if not admin_keys:
        raise ApiError(403, "operator_off", "The operator view is off: set CAPBOT_ADMIN_KEY (or CAPBOT_API_KEYS) "
                                            "on the server to open it.")
    key = bearer_key(request)
    if key is None or not any(hmac.compare_digest(key.encode(), k.encode()) for k in admin_keys):
        raise ApiError(401, "unauthorized", "The operator view needs the admin key: send `Authorization: Bearer KEY`.",
                       {"WWW-Authenticate": 'Bearer realm="capbot operator"'})
    return Caller(user=pseudonym("admin", key), kind="admin")


def admin_router(ctx: WebContext) -> APIRouter:
    """Routes under /v1/admin."""
    router = APIRouter(prefix="/v1/admin", tags=["operator"])

    def operator_caller(request: Request) -> Caller:
        return identify_operator(request, ctx.config.admin_keys)

    operator = Depends(operator_caller)

    @router.get("/queue", response_model=QueueOut, responses=_responses(401, 403, 422, 503))
    async def queue(limit: int = Query(24, ge=1, le=200, description="How many images."),
                    who: Caller = operator) -> QueueOut:
        """The captioned images most worth a human look, highest score first (as `capbot feedback queue`)."""
        return QueueOut(items=await asyncio.to_thread(_queue, ctx, limit))

    @router.get("/images/{sha256}", response_class=Response, responses=_responses(401, 403, 404))
    async def thumbnail(sha256: str, who: Caller = operator) -> Response:
        """A JPEG thumbnail (at most 320 px on a side) of a stored image."""
        data = await asyncio.to_thread(_thumbnail, ctx, sha256)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @router.post("/captions/{caption_id}/corrections", status_code=201, response_model=CorrectionOut,
                 responses=_responses(401, 403, 404, 422, 429))
    async def correct(caption_id: int, body: CorrectionIn, who: Caller = operator) -> CorrectionOut:
        """The operator's correction of any caption."""
        reply = await asyncio.to_thread(ctx.core.submit_correction, caption_id, ctx.origin(who), body.text)
        if reply.kind is not ReplyKind.DONE:
            raise reply_error(reply)
        return CorrectionOut(caption_id=caption_id, status="accepted", message=reply.text)

    @router.post("/captions/{caption_id}/confirmations", status_code=201, response_model=ConfirmationOut,
                 responses=_responses(401, 403, 404, 429))
    async def confirm(caption_id: int, who: Caller = operator) -> ConfirmationOut:
        """The operator's word that a caption is right."""
        reply = await asyncio.to_thread(ctx.core.confirm_caption, caption_id, ctx.origin(who))
        if reply.kind is not ReplyKind.DONE:
            raise reply_error(reply)
        return ConfirmationOut(caption_id=caption_id, status="accepted", message=reply.text)

    @router.get("/models", response_model=AdminModelsOut, responses=_responses(401, 403, 503))
    async def models(who: Caller = operator) -> AdminModelsOut:
        """The registry's versions with their gate metrics (for the plot), and what serves now."""
        return await asyncio.to_thread(_models, ctx)

    @router.post("/models/{version_id}/promote", response_model=AdminModelsOut,
                 responses=_responses(401, 403, 404, 503))
    async def promote(version_id: str, who: Caller = operator) -> AdminModelsOut:
        """Make a version the active one (as `capbot models promote`); serving follows within the registry poll."""
        return await asyncio.to_thread(_change_registry, ctx, "promote", version_id)

    @router.post("/models/rollback", response_model=AdminModelsOut, responses=_responses(401, 403, 409, 503))
    async def rollback(who: Caller = operator) -> AdminModelsOut:
        """Re-activate the version that was active before the current one (as `capbot models rollback`)."""
        return await asyncio.to_thread(_change_registry, ctx, "rollback", None)

    return router


def _engine(ctx: WebContext):  # type: ignore[no-untyped-def]
    if ctx.engine is None or ctx.blobs is None:
        raise ApiError(503, "no_database", "This server has no database.")
    return ctx.engine


def _queue(ctx: WebContext, limit: int) -> list[QueueItemOut]:
    from storage import db
    from storage.queue import review_queue

    with db.session_scope(_engine(ctx)) as session:
        items = review_queue(session, ctx.blobs, limit=limit)
    return [QueueItemOut(
        caption_id=i.caption_id, caption=i.caption, confidence=i.confidence, unsure=ctx.core.is_unsure(i.confidence),
        model_version=i.model_version, corrections=list(i.corrections), confirmations=i.confirmations, users=i.users,
        score=round(i.score, 4), uncertainty=round(i.uncertainty, 4), disagreement=round(i.disagreement, 4),
        platform=i.platform, captioned_at=i.captioned_at, image_sha256=i.image_sha256,
    ) for i in items]


def _thumbnail(ctx: WebContext, sha256: str) -> bytes:
    _engine(ctx)
    if not _SHA256.fullmatch(sha256) or not ctx.blobs.exists(sha256):
        raise ApiError(404, "unknown_image", "There is no stored image with that hash.")
    with Image.open(ctx.blobs.path(sha256)) as image:
        image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        out = io.BytesIO()
        image.convert("RGB").save(out, format="JPEG", quality=82)
    return out.getvalue()


def _models(ctx: WebContext) -> AdminModelsOut:
    from capbot.web.v1 import _versions

    versions = _versions(_engine(ctx))
    active = next((v.id for v in versions if v.status == "active"), None)
    points = [VersionPoint(id=v.id, status=v.status, created_at=v.created_at, activated_at=v.activated_at,
                           **gate_metrics(v.metrics)) for v in sorted(versions, key=_oldest_first)]
    return AdminModelsOut(serving=ctx.model_version(), active=active, versions=versions, points=points)


def _oldest_first(version) -> tuple:  # type: ignore[no-untyped-def]
    return (version.created_at is None, version.created_at or 0, version.id)


def gate_metrics(metrics: dict) -> dict:
    """The numbers the plot shows from a version's registry metrics: a retrained version's `base` and
    `feedback` scores and gate reason, or a trained version's own validation CIDEr."""
    base, feedback, gate = metrics.get("base"), metrics.get("feedback"), metrics.get("gate")
    return {
        "base_cider": _number(base.get("cider") if isinstance(base, dict) else metrics.get("cider")),
        "feedback_cider": _number(feedback.get("cider") if isinstance(feedback, dict) else None),
        "gate": gate.get("reason") if isinstance(gate, dict) else None,
    }


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _change_registry(ctx: WebContext, action: str, version_id: str | None) -> AdminModelsOut:
    from storage import db, registry

    try:
        with db.session_scope(_engine(ctx)) as session:
            if action == "promote":
                registry.promote(session, version_id)
            else:
                registry.rollback(session)
    except StorageError as exc:
        raise ApiError(_STATUS_BY_REASON.get(exc.reason, 422), exc.reason, exc.message) from None
    return _models(ctx)
