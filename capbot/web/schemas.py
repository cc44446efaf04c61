"""The JSON shapes of the /v1 API (they are also its OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class CaptionOut(BaseModel):
    """A caption the API just made."""

    id: int = Field(..., description="The caption's id, for GET /v1/captions/{id} and corrections.")
    text: str = Field(..., description="The model's best caption.")
    alternatives: list[str] = Field(..., description="Other captions the model considered, best first.")
    confidence: float | None = Field(..., ge=0, le=1, description="How sure the model is, 0..1: the geometric "
                                     "mean of the caption's token probabilities. Null if the captioner gives none.")
    unsure: bool = Field(..., description="Confidence is below the server's low-confidence threshold: show the "
                         "caption as a guess and invite a correction.")
    model_version: str = Field(..., description="The model version that wrote the caption.")
    timings_ms: dict[str, float] = Field(..., description="Milliseconds: queue (waiting for a worker), caption "
                                         "(the captioner), total (the whole request), engine_* (the engine's parts).")


class StoredCaptionOut(BaseModel):
    """A caption as stored."""

    id: int
    text: str
    alternatives: list[str]
    confidence: float | None = Field(..., ge=0, le=1)
    unsure: bool
    model_version: str
    created_at: datetime | None


class CorrectionIn(BaseModel):
    """A better caption for a caption."""

    text: str = Field(..., max_length=2000, description="The caption as it should be (3-300 characters once "
                      "cleaned; no links or mentions).", examples=["a tabby cat lying on a sofa"])


class CorrectionOut(BaseModel):
    """A stored correction."""

    caption_id: int
    status: str = Field(..., description="Always 'accepted' here; refusals are errors with a reason code.")
    message: str


class ModelVersionOut(BaseModel):
    """One version in the model registry."""

    id: str
    status: str = Field(..., description="candidate, active or retired.")
    parent_id: str | None
    created_at: datetime | None
    activated_at: datetime | None
    metrics: dict


class ModelsOut(BaseModel):
    """What serves captions, and the registry's versions."""

    serving: str = Field(..., description="The model version the captioner is using now.")
    active: str | None = Field(..., description="The registry's active version (null before the first promotion: "
                               "the configured base model serves).")
    versions: list[ModelVersionOut]


class HealthOut(BaseModel):
    """The process is up."""

    status: str
    model_version: str


class CheckOut(BaseModel):
    """One readiness check."""

    ok: bool
    detail: str


class ReadyOut(BaseModel):
    """Whether the service can answer caption requests: model loaded, database reachable and migrated."""

    status: str = Field(..., description="ready or not_ready (then the status code is 503).")
    checks: dict[str, CheckOut]
    platforms: dict[str, "PlatformOut"] = Field(default_factory=dict, description="The chat platforms capbot "
                                                "connects to itself (Discord, Slack Socket Mode) and where each "
                                                "stands. Reported, not part of `status`: the web API serves "
                                                "whether or not a platform is reachable.")


class PlatformOut(BaseModel):
    """One platform connection."""

    state: str = Field(..., description="connecting, connected, retrying (waiting to try again), failed (gave "
                       "up: fix the settings) or stopped.")
    detail: str
    failures: int = Field(..., description="Failed attempts to connect since start-up.")
    since: float = Field(..., description="When it entered this state (Unix time).")


ReadyOut.model_rebuild()
