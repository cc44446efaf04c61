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


class ConfirmationOut(BaseModel):
    """A stored confirmation: the caller said the caption is right."""

    caption_id: int
    status: str = Field(..., description="Always 'accepted' here; refusals are errors with a reason code.")
    message: str


class QueueItemOut(BaseModel):
    """One image of the review queue (`capbot feedback queue`): its newest caption and what users said."""

    caption_id: int = Field(..., description="The newest caption of the image: corrections and confirmations go here.")
    caption: str
    confidence: float | None
    unsure: bool
    model_version: str
    corrections: list[str] = Field(..., description="What users said instead (distinct texts, most users first).")
    confirmations: int = Field(..., description="Users who said this caption is right.")
    users: int = Field(..., description="Distinct users who answered about this image.")
    score: float = Field(..., description="uncertainty + disagreement: higher is more worth a look.")
    uncertainty: float
    disagreement: float
    platform: str
    captioned_at: datetime | None
    image_sha256: str = Field(..., description="The image's hash: GET /v1/admin/images/{image_sha256} is a thumbnail.")


class QueueOut(BaseModel):
    """The review queue, highest score first."""

    items: list[QueueItemOut]


class VersionPoint(BaseModel):
    """A model version's gate metrics, for plotting over time."""

    id: str
    status: str
    created_at: datetime | None
    activated_at: datetime | None
    base_cider: float | None = Field(..., description="CIDEr on the held-out base set (a trained model's "
                                     "validation CIDEr when it was not retrained).")
    feedback_cider: float | None = Field(..., description="CIDEr on held-out user corrections (retrained versions).")
    gate: str | None = Field(..., description="The promotion gate's reason, for retrained versions.")


class AdminModelsOut(ModelsOut):
    """The registry with each version's gate metrics, oldest first, for the operator view's plot."""

    points: list[VersionPoint]


ReadyOut.model_rebuild()
