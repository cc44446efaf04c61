"""What crosses the wire between `ModalCaptioner` (the caller) and the deployed GPU class: plain dicts.

Plain dicts, not pickled dataclasses, so a caller and a deployment of slightly different capbot versions
still understand each other. A batched Modal method returns one result per input, so a refused image is
a result too (`{"error": ..., "reason": ...}`), turned back into the same `ImageError` on the caller's side.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from storage.errors import UserError
from inference.images import ImageError
from inference.types import Caption, GenerationOptions

ERROR_KEY = "error"


def options_to_wire(options: GenerationOptions) -> dict[str, Any]:
    """GenerationOptions as a dict."""
    return asdict(options)


def options_from_wire(data: dict[str, Any] | None) -> GenerationOptions:
    """GenerationOptions from a dict; unknown keys (from a newer caller) are ignored."""
    known = {f.name for f in fields(GenerationOptions)}
    return GenerationOptions(**{k: v for k, v in (data or {}).items() if k in known})


def caption_to_wire(caption: Caption) -> dict[str, Any]:
    """A Caption as a dict."""
    return {"text": caption.text, "model_version": caption.model_version, "timings_ms": dict(caption.timings_ms),
            "confidence": caption.confidence, "alternatives": list(caption.alternatives)}


def error_to_wire(exc: UserError) -> dict[str, Any]:
    """A refused input (bad image, bad options) as a result."""
    return {ERROR_KEY: exc.message, "reason": exc.reason, "kind": "image" if isinstance(exc, ImageError) else "user"}


def caption_from_wire(data: dict[str, Any]) -> Caption:
    """The Caption a result holds, or raise the error it carries (`ImageError` for images)."""
    if ERROR_KEY in data:
        error = ImageError if data.get("kind", "image") == "image" else UserError
        raise error(str(data[ERROR_KEY]), reason=str(data.get("reason", "error")))
    return Caption(
        text=data["text"], model_version=data["model_version"], timings_ms=dict(data.get("timings_ms") or {}),
        confidence=data.get("confidence"), alternatives=tuple(data.get("alternatives") or ()),
    )
