"""SQLAlchemy 2 typed models: the one schema for SQLite and Postgres.

The Alembic history in storage/migrations must describe exactly these tables; a test compares them.
Status columns are plain strings guarded by CHECK constraints (no native enum types, so SQLite and
Postgres share one migration history and a downgrade leaves nothing behind).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from storage.clock import as_utc, utcnow

PLATFORMS = ("discord", "slack", "web", "cli")
CORRECTION_STATUSES = ("accepted", "withdrawn", "overridden")
# A user's answer about a caption: a better text (correction), or "this caption is right" (confirmation,
# its text the caption's own). Both are feedback: one accepted answer per user and image, exported alike.
CORRECTION_KINDS = ("correction", "confirmation")
VERSION_STATUSES = ("candidate", "active", "retired")
RUN_STATUSES = ("running", "promoted", "failed", "not_promoted")  # see storage.runs

# Named constraints let Alembic's batch mode (SQLite table rebuilds) find and alter them later.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Ids that grow without bound: 64-bit on Postgres. SQLite's INTEGER PRIMARY KEY is already 64-bit, and only
# that exact type makes the column the rowid that numbers new rows.
RowId = BigInteger().with_variant(Integer(), "sqlite")
MAX_ROW_ID = 2**63 - 1  # the largest id either store can hold; larger ones name no row


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Image(Base):
    """An image seen by the bot, content-addressed; its bytes live in the blob store under `sha256`."""

    __tablename__ = "images"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))  # "jpeg", "png", ... as the intake decoded it
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    first_platform: Mapped[str | None] = mapped_column(String(16))
    first_workspace_id: Mapped[str | None] = mapped_column(String(64))
    first_channel_id: Mapped[str | None] = mapped_column(String(64))
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When its file left the blob store (the retention sweep), or was never written (a community keeping no
    # images); None while the blob store has it. The row stays: captions refer to it.
    blob_removed_at: Mapped[datetime | None] = mapped_column()


class Caption(Base):
    """One caption the model produced for an image, with where and for whom."""

    __tablename__ = "captions"
    __table_args__ = (
        CheckConstraint(_in("platform", PLATFORMS), name="platform"),
        Index(None, "image_sha256"),
        Index(None, "platform", "user_id"),
        Index(None, "platform", "message_ref"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    image_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256"))
    model_version: Mapped[str] = mapped_column(String(128))  # registry id or hub id; not a foreign key
    text: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)  # generation options used
    latency_ms: Mapped[float | None] = mapped_column(Float)
    confidence: Mapped[float | None] = mapped_column(Float)  # 0..1 (inference.confidence); None if not given
    # The other captions offered beside `text` (beam search n-best), best first; [] when none.
    alternatives: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    platform: Mapped[str] = mapped_column(String(16))
    workspace_id: Mapped[str | None] = mapped_column(String(64))  # Slack team / Discord guild
    channel_id: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(64))  # who posted or asked
    message_ref: Mapped[str | None] = mapped_column(String(255))  # the bot's reply (ts / message id)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Correction(Base):
    """A user's better caption for a model caption, or their confirmation that it is right (`kind`); only
    validated text is ever stored."""

    __tablename__ = "corrections"
    __table_args__ = (
        CheckConstraint(_in("status", CORRECTION_STATUSES), name="status"),
        CheckConstraint(_in("kind", CORRECTION_KINDS), name="kind"),
        Index(None, "caption_id", "user_id"),
        Index(None, "image_sha256", "status"),
        Index(None, "platform", "user_id"),
        Index(None, "created_at"),
        # One user holds at most one accepted correction per image: the database refuses a second one, so
        # two simultaneous corrections cannot both stay accepted (storage.corrections overrides first).
        Index(
            "uq_corrections_one_accepted",
            "image_sha256",
            "platform",
            "user_id",
            unique=True,
            sqlite_where=text("status = 'accepted'"),
            postgresql_where=text("status = 'accepted'"),
        ),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    caption_id: Mapped[int] = mapped_column(RowId, ForeignKey("captions.id", ondelete="CASCADE"))
    image_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256"))  # copied for export queries
    platform: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="accepted")
    kind: Mapped[str] = mapped_column(String(16), default="correction", server_default="correction")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    status_changed_at: Mapped[datetime | None] = mapped_column()


class ProcessedEvent(Base):
    """A platform event already handled; the primary key makes a second insert fail."""

    __tablename__ = "processed_events"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChannelSetting(Base):
    """Per-channel switches; a channel without a row uses the caller's default."""

    __tablename__ = "channel_settings"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str | None] = mapped_column(String(64))
    auto_caption: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class UserOptOut(Base):
    """A user who asked not to be auto-captioned and not to have their corrections used for training."""

    __tablename__ = "user_opt_outs"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    opted_out_at: Mapped[datetime] = mapped_column(default=utcnow)


class CommunitySetting(Base):
    """What a community (Slack workspace, Discord server) decided for all its channels; no row, or a None
    column, means the operator's default (docs/privacy.md)."""

    __tablename__ = "community_settings"
    __table_args__ = (CheckConstraint("image_retention_days >= 0", name="retention"),)

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # Slack team / Discord guild
    training_consent: Mapped[bool | None] = mapped_column(Boolean)  # may its images and corrections train?
    image_retention_days: Mapped[int | None] = mapped_column(Integer)  # at most this, 0 = keep no images
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(64))  # the admin's user id


class PrivacyNotice(Base):
    """A channel where the bot has said what it keeps (once, with its first caption there)."""

    __tablename__ = "privacy_notices"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    noticed_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewPost(Base):
    """An image the review digest asked people to look at: its review is open for a while (storage.reviews),
    and the retention sweep leaves its file alone meanwhile."""

    __tablename__ = "review_posts"

    image_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256", ondelete="CASCADE"), primary_key=True)
    posted_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersion(Base):
    """A trained model in the registry; at most one row is 'active' (a partial unique index)."""

    __tablename__ = "model_versions"
    __table_args__ = (
        CheckConstraint(_in("status", VERSION_STATUSES), name="status"),
        Index(
            "uq_model_versions_one_active",
            "status",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    location: Mapped[str] = mapped_column(String(1024))  # directory or hub id the captioner loads
    parent_id: Mapped[str | None] = mapped_column(String(128))  # what it was fine-tuned from
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="candidate")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column()
    retired_at: Mapped[datetime | None] = mapped_column()
    rolled_back_at: Mapped[datetime | None] = mapped_column()  # set when a rollback left this version


class ModelActivation(Base):
    """Every time a version became active (promote or rollback): the history rollback walks back."""

    __tablename__ = "model_activations"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))  # "promote" or "rollback"
    activated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrainingRun(Base):
    """One retraining attempt: its data, outcome and the version it produced."""

    __tablename__ = "training_runs"
    __table_args__ = (
        CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        Index(None, "status", "started_at"),
        UniqueConstraint("result_version"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="running")
    reason: Mapped[str | None] = mapped_column(Text)  # why it failed or was not promoted
    base_version: Mapped[str | None] = mapped_column(String(128))
    result_version: Mapped[str | None] = mapped_column(String(128))
    feedback_since: Mapped[datetime | None] = mapped_column()  # feedback window start it used
    data_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)  # rows by source
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)


# --- Slack's OAuth install flow ------------------------------------------------------------------------------
# slack_sdk's SQLAlchemyInstallationStore and SQLAlchemyOAuthStateStore read and write these tables by name
# (bots/slack/install.py); capbot's migrations create them, so that installations live in capbot's own database
# on SQLite and Postgres alike. Columns as slack_sdk 3.48 defines them (tests/bots/slack/test_install.py compares
# them with the library's own definitions). Bot tokens are stored here in the clear: guard the database.

def _slack_installation_columns() -> list[Column]:
    return [
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("client_id", String(32), nullable=False),
        Column("app_id", String(32), nullable=False),
        Column("enterprise_id", String(32)),
        Column("enterprise_name", String(200)),
        Column("enterprise_url", String(200)),
        Column("team_id", String(32)),
        Column("team_name", String(200)),
        Column("bot_token", String(200)),
        Column("bot_id", String(32)),
        Column("bot_user_id", String(32)),
        Column("bot_scopes", String(1000)),
        Column("bot_refresh_token", String(200)),
        Column("bot_token_expires_at", DateTime),
        Column("user_id", String(32), nullable=False),
        Column("user_token", String(200)),
        Column("user_scopes", String(1000)),
        Column("user_refresh_token", String(200)),
        Column("user_token_expires_at", DateTime),
        Column("incoming_webhook_url", String(200)),
        Column("incoming_webhook_channel", String(200)),
        Column("incoming_webhook_channel_id", String(200)),
        Column("incoming_webhook_configuration_url", String(200)),
        Column("is_enterprise_install", Boolean, nullable=False),
        Column("token_type", String(32)),
        Column("installed_at", DateTime, nullable=False),
    ]


def _slack_bot_columns() -> list[Column]:
    return [
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("client_id", String(32), nullable=False),
        Column("app_id", String(32), nullable=False),
        Column("enterprise_id", String(32)),
        Column("enterprise_name", String(200)),
        Column("team_id", String(32)),
        Column("team_name", String(200)),
        Column("bot_token", String(200)),
        Column("bot_id", String(32)),
        Column("bot_user_id", String(32)),
        Column("bot_scopes", String(1000)),
        Column("bot_refresh_token", String(200)),
        Column("bot_token_expires_at", DateTime),
        Column("is_enterprise_install", Boolean, nullable=False),
        Column("installed_at", DateTime, nullable=False),
    ]


SLACK_INSTALLATIONS = Table(
    "slack_installations", Base.metadata, *_slack_installation_columns(),
    Index("slack_installations_idx", "client_id", "enterprise_id", "team_id", "user_id", "installed_at"),
)
SLACK_BOTS = Table(
    "slack_bots", Base.metadata, *_slack_bot_columns(),
    Index("slack_bots_idx", "client_id", "enterprise_id", "team_id", "installed_at"),
)
SLACK_OAUTH_STATES = Table(
    "slack_oauth_states", Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("state", String(200), nullable=False),
    Column("expire_at", DateTime, nullable=False),
)
