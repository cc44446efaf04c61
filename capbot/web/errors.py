"""Every error the web API answers: JSON `{"error": {"code": ..., "message": ...}}` with a 4xx/5xx status.

`code` is stable and machine-readable (the core's or the intake's `reason`, e.g. "not_image",
"private_address", "rate_limited"); `message` is a sentence for a person. Only a bug gives 500. The old
`/api/...` routes keep their original shape, `{"detail": message, "reason": code}`.
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from bots.core import Reply, ReplyKind

log = logging.getLogger(__name__)

LEGACY_PREFIX = "/api/"

# Status for each refusal reason that is not a plain 422 "this input cannot be used".
_STATUS_BY_REASON = {
    "too_large": 413,
    "unknown_caption": 404,
    "rate_limited": 429,
    "queue_full": 503,
    "internal": 500,
}
_CODE_BY_STATUS = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                   408: "request_timeout", 413: "too_large", 415: "unsupported_media_type", 422: "invalid_request"}


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str  # stable, machine-readable (e.g. not_image, private_address, rate_limited)
    message: str  # a sentence fit to show a person


class ErrorBody(BaseModel):
    """The body of every error answer of the /v1 API."""

    error: ErrorDetail


class LegacyErrorBody(BaseModel):
    """The error body of the deprecated /api/... routes."""

    detail: str  # the message
    reason: str  # the code


class ApiError(Exception):
    """An answer other than success: status, stable code, human message, optional headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def reply_error(reply: Reply) -> ApiError:
    """The API error for a core reply that is not the success the caller wanted."""
    reason = reply.reason or reply.kind.value
    if reply.kind is ReplyKind.ERROR:
        return ApiError(500, "internal", reply.text)
    status = _STATUS_BY_REASON.get(reason, 422)
    headers = {}
    if status in (429, 503):
        headers["Retry-After"] = str(max(1, math.ceil(reply.retry_after_s or 1)))
    return ApiError(status, reason, reply.text, headers)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error, including FastAPI's own validation and routing errors, answer in the JSON shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


def error_response(request: Request, error: ApiError) -> JSONResponse:
    """The JSON answer for `error`, in the legacy shape under /api/."""
    if request.url.path.startswith(LEGACY_PREFIX):
        body: dict = {"detail": error.message, "reason": error.code}
    else:
        body = {"error": {"code": error.code, "message": error.message}}
    return JSONResponse(body, status_code=error.status, headers=error.headers)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    if exc.status >= 500:
        log.error("request failed", extra={"path": request.url.path, "code": exc.code})
    return error_response(request, exc)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(request, ApiError(422, "invalid_request", _describe(exc)))


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):
        # FastAPI reports a JSON body that is not UTF-8 as a 400 "error parsing the body"; it is unusable
        # input like any other JSON the API cannot read.
        message = f"The body is not UTF-8 JSON ({cause.reason} at byte {cause.start})."
        return error_response(request, ApiError(422, "invalid_request", message))
    code = _CODE_BY_STATUS.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else "request refused"
    return error_response(request, ApiError(exc.status_code, code, message, dict(exc.headers or {})))


def _describe(exc: RequestValidationError) -> str:
    """One sentence naming each bad field: "beams: Input should be less than or equal to 8"."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses=` entries documenting the error shape for each status."""
    return {status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in statuses}


_DESCRIPTIONS = {
    400: "The body could not be read (e.g. broken multipart).",
    401: "API keys are configured and the request carries no valid `Authorization: Bearer` key.",
    404: "No such caption (or not one of the caller's).",
    408: "The request body did not arrive within CAPBOT_REQUEST_BODY_TIMEOUT_S; the connection is closed.",
    413: "The image or body is larger than the limit (checked while reading).",
    415: "The body is neither multipart, image/* nor JSON.",
    422: "The input cannot be used; `error.code` says why (not_image, private_address, bad_options, link, ...).",
    429: "A per-user rate limit; Retry-After says when to try again.",
    500: "A bug on the server (logged).",
    503: "Busy (queue full) or not ready; Retry-After says when to try again.",
}
