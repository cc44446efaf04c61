"""Reading a caption request's body without ever holding more than the limit: multipart, raw image, or JSON URL.

A declared Content-Length over the limit is refused before reading anything; otherwise the body is counted
as it arrives and reading stops at the first byte past the limit (a chunked or lying client gets the same
413). Multipart is parsed from the same counted stream (Starlette spools file parts to disk past 1 MB).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.types import Message, Receive

from capbot.web.errors import ApiError

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file
MAX_JSON_BYTES = 16 * 1024
FILE_FIELD = "file"


class UrlRequest(BaseModel):
    """JSON body of `POST /v1/captions` for an image on the web."""

    url: str = Field(..., min_length=1, max_length=2048, description="An http(s) link to an image; fetched by the "
                     "server under the same rules as the bots' (public addresses only, size and redirect caps).")


@dataclass(frozen=True)
class CaptionSource:
    """What to caption: image bytes, or a URL for the safe fetcher."""

    image: bytes | None = None
    url: str | None = None


class _TooLarge(Exception):
    pass


async def read_caption_source(request: Request, max_image_bytes: int, file_field: str = FILE_FIELD) -> CaptionSource:
    """The image (multipart field `file_field`, or a raw `image/*` body) or the URL (JSON) of a caption request."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == "multipart/form-data":
        return CaptionSource(image=await _read_multipart(request, max_image_bytes, file_field))
    if content_type.startswith("image/"):
        return CaptionSource(image=_nonempty(await read_capped(request, max_image_bytes)))
    if content_type == "application/json":
        return CaptionSource(url=_parse_url_request(await read_capped(request, MAX_JSON_BYTES, what="JSON body")))
    raise ApiError(415, "unsupported_media_type",
                   "Send the image as multipart/form-data (field 'file'), as a raw image/* body, or send JSON "
                   '{"url": "https://..."}' + (f"; got {content_type}." if content_type else "; got no Content-Type."))


async def read_capped(request: Request, limit: int, *, what: str = "image") -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    _check_declared_length(request, limit, what)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit, what)
    return bytes(body)


async def _read_multipart(request: Request, limit: int, file_field: str) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise _too_large(limit, "image")
    counted = Request(request.scope, receive=_capped_receive(request.receive, limit + MULTIPART_OVERHEAD))
    try:
        async with counted.form(max_files=1, max_fields=16) as form:
            upload = form.get(file_field)
            if not isinstance(upload, UploadFile):
                raise ApiError(422, "no_image", f"Attach the image in the form field '{file_field}'.")
            data = await upload.read(limit + 1)
    except _TooLarge:
        raise _too_large(limit, "image") from None
    except MultiPartException as exc:
        raise ApiError(400, "bad_multipart", f"The multipart body could not be read: {exc.message}") from None
    except HTTPException as exc:  # how Starlette's form() reports a broken body inside an app (no boundary, two files)
        if exc.status_code != 400:
            raise
        raise ApiError(400, "bad_multipart", f"The multipart body could not be read: {exc.detail}") from None
    if len(data) > limit:
        raise _too_large(limit, "image")
    return _nonempty(data)


def _capped_receive(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge()
        return message

    return counted


def _check_declared_length(request: Request, limit: int, what: str) -> None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, what)


def _nonempty(data: bytes) -> bytes:
    if not data:
        raise ApiError(422, "empty", "The uploaded file is empty.")
    return data


def _parse_url_request(raw: bytes) -> str:
    try:
        return UrlRequest.model_validate_json(raw).url.strip()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise ApiError(422, "invalid_request", f'Expected JSON like {{"url": "https://..."}} ({problems}).') from None


def _too_large(limit: int, what: str) -> ApiError:
    size = f"{limit / (1024 * 1024):.1f} MB" if limit >= 1024 * 1024 else f"{limit:,} bytes"
    return ApiError(413, "too_large", f"The {what} is larger than the {size} limit.")
