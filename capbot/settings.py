"""The one typed settings object. Built by `get_settings()`, never at import time.

Every field reads from the environment with the prefix `CAPBOT_` (e.g. `CAPBOT_MODEL`) or from a `.env`
file in the working directory. Secrets are `SecretStr` so they never print in logs or reprs.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "nlpconnect/vit-gpt2-image-captioning"


class Settings(BaseSettings):
    """capbot's configuration; docs/configuration.md has a table of these fields."""

    model_config = SettingsConfigDict(
        env_prefix="CAPBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- model and inference ---
    model: str = Field(DEFAULT_MODEL, description="Hub id or local model directory used when the registry has no active version.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the local captioner runs; auto picks cuda when available.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="Weight dtype for inference; auto = bf16 on capable GPUs, fp32 on CPU.")
    captioner: Literal["local", "modal"] = Field("local", description="local: in-process; modal: the deployed Modal GPU class (docs/modal.md).")
    registry_poll_s: float = Field(30.0, gt=0, description="How often serving checks the registry for a newly promoted version.")
    batch_size: int = Field(8, ge=1, le=256, description="Images per forward pass in the local engine.")
    precision: Literal["auto", "exact", "fast"] = Field("auto", description="Local engine: exact = plain generate (fp32 on CPU); fast = int8 ONNX Runtime graphs with capbot's own decode loop (CPU only); auto = fast on CPU, exact on GPU.")
    threads: int = Field(0, ge=0, le=256, description="Intra-op CPU threads of the local engine; 0 = the cores this process may use, at most 4 (exact mode: torch's own default).")
    batch_wait_ms: float = Field(10.0, ge=0, le=1000, description="Micro-batching: how long a caption request waits for concurrent ones to share its forward pass (up to batch_size images); 0 = off.")

    # --- generation defaults ---
    num_beams: int = Field(1, ge=1, le=16, description="Beam width of captions (1 = greedy); served captions search with at least num_alternatives + 1 beams, so the default serves 3 (docs/models.md).")
    max_new_tokens: int = Field(24, ge=1, le=128, description="Upper bound on caption length in tokens.")
    no_repeat_ngram_size: int = Field(3, ge=0, le=10, description="Forbid repeating n-grams of this size (0 = off).")
    num_alternatives: int = Field(2, ge=0, le=9, description="Other captions offered with each served caption (beam search n-best, shown in correction forms); serving searches with at least this + 1 beams.")
    confidence_views: int | None = Field(None, ge=0, le=4, description="Views of each served image (the model input moved 2 pixels right, down, left, up) its caption is also scored on for its confidence; 0 = the image only. Unset or 'auto': 4 where the model runs on a GPU (the Modal GPU class, local CUDA), 0 on the CPU. 4 separates wrong captions better (AUROC 0.76 -> 0.82 on the test fixture) but makes a full-size caption on the CPU fast path 3-4x slower.")
    caption_prompt: str | None = Field(None, description="The prompt of a model family that captions from one (docs/models.md): Florence-2's task, <CAPTION> (default), <DETAILED_CAPTION> or <MORE_DETAILED_CAPTION>; SmolVLM's question (default 'Caption this image.'). Unset: the family's default; BLIP, GIT and ViT+GPT-2 take none and refuse one.")
    low_confidence: float = Field(0.5, ge=0, le=1, description="Below this confidence (0-1) the bots and the page say they are unsure and invite a correction.")

    # --- image limits ---
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Largest accepted image file, in bytes.")
    max_image_pixels: int = Field(40_000_000, ge=1, description="Largest accepted width x height (decompression-bomb guard).")
    decode_budget_megapixels: float = Field(50.0, gt=0, le=10_000, description="Megapixels the process decodes at once, over all concurrent images (a decode waits for room; one larger image decodes alone). Bounds the memory a burst of large images takes: roughly 4-8 bytes per pixel held, so 200-400 MB by default. Large images are shrunk to about 2 megapixels as soon as they are decoded (JPEGs decode at a reduced scale).")

    # --- storage ---
    data_dir: Path = Field(Path("./capbot-data"), description="Root for the database, blobs, models, datasets and runs.")
    database_url: str = Field("", description="SQLAlchemy URL; default sqlite under data_dir. postgres:// URLs are normalised.")
    blob_dir: Path | None = Field(None, description="Image blob store directory; default data_dir/blobs.")

    # --- bots ---
    slack_bot_token: SecretStr | None = Field(None, description="xoxb- token; enables the Slack bot for one workspace (many: CAPBOT_SLACK_CLIENT_ID).")
    slack_signing_secret: SecretStr | None = Field(None, description="Verifies Slack HTTP requests.")
    slack_app_token: SecretStr | None = Field(None, description="xapp- token; enables Socket Mode instead of HTTP events.")
    slack_api_url: str = Field("https://slack.com/api/", description="Slack Web API base URL (a proxy or local stand-in).")
    slack_client_id: str | None = Field(None, description="Slack app's Client ID; with CAPBOT_SLACK_CLIENT_SECRET, the signing secret and CAPBOT_PUBLIC_URL, any workspace installs capbot at /slack/install and each is answered with its own bot token (docs/slack.md). Not with CAPBOT_SLACK_BOT_TOKEN.")
    slack_client_secret: SecretStr | None = Field(None, description="Slack app's Client Secret, for the OAuth install flow (with CAPBOT_SLACK_CLIENT_ID).")
    discord_token: SecretStr | None = Field(None, description="Bot token; enables the Discord bot.")
    discord_api_url: str = Field("https://discord.com/api/v10", description="Discord REST base URL.")
    discord_gateway_url: str = Field("wss://gateway.discord.gg/", description="Discord gateway websocket URL.")
    discord_message_content: bool = Field(True, description="Ask for the privileged Message Content intent (needed for auto-captioning).")
    discord_shards: int | None = Field(None, ge=1, le=10_000, description="Gateway shards the Discord bot opens (each carries up to 2,500 servers); unset = as many as Discord recommends (GET /gateway/bot).")
    auto_caption_default: bool = Field(True, description="Whether channels nobody has switched with /caption on|off are auto-captioned.")
    rate_limit_per_minute: int = Field(10, ge=1, description="Caption requests one user may make per minute.")
    correction_rate_limit_per_minute: int = Field(20, ge=1, description="Corrections one user may send per minute.")
    queue_size: int = Field(64, ge=1, description="Caption jobs waiting at most; beyond this users are told the bot is busy.")
    workers: int = Field(8, ge=1, le=64, description="Threads taking caption jobs off the queue; concurrent jobs share forward passes (CAPBOT_BATCH_WAIT_MS).")
    fetch_timeout_s: float = Field(10.0, gt=0, description="Timeout for fetching an image by URL.")
    fetch_max_redirects: int = Field(3, ge=0, le=10, description="Redirects followed when fetching an image by URL.")

    # --- privacy (docs/privacy.md) ---
    training_consent_default: bool = Field(True, description="Whether a community (Slack workspace, Discord server) whose admins never used /caption training on|off lets its images and corrections train the model; the web page, the API and direct messages follow it too. False: only communities that said /caption training on.")
    image_retention_days: int | None = Field(None, ge=0, le=36_500, description="Days the image files of captions nobody corrected or confirmed are kept (the caption rows stay); unset = until forgotten; 0 = keep no images: an image file is written only when a user corrects or confirms its caption (until then its bytes wait in memory, CAPBOT_IMAGE_HOLD_MINUTES). Communities may keep less (/caption retention).")
    image_hold_minutes: int = Field(60, ge=1, le=1440, description="Where no images are kept (retention 0): how long an image's bytes stay in this process's memory, so that a correction made within that time can still save it.")
    retention_sweep_cron: str = Field("17 * * * *", description="Crontab expression (UTC) of the sweep that removes image files past their retention in `capbot run`; empty = no sweep (`capbot sweep-images` runs it by hand).")

    # --- web server ---
    host: str = Field("127.0.0.1", description="Address the web server binds.")
    port: int = Field(8000, ge=0, le=65535, description="Port of the web server (demo page, API, /slack/events).")
    api_keys: SecretStr | None = Field(None, description="Comma-separated API keys; when set, the /v1 API (and so the page) needs `Authorization: Bearer KEY` and captions are attributed to the key.")
    admin_key: SecretStr | None = Field(None, description="Key of the operator view (/operator: review queue, model versions, promote and rollback) and its /v1/admin API. Unset: any of CAPBOT_API_KEYS opens it; with neither, the operator view is off.")
    trusted_proxies: str = Field("", description="Comma-separated addresses or networks of reverse proxies whose X-Forwarded-For is believed; empty = use the connecting address.")
    api_max_beams: int = Field(8, ge=1, le=16, description="Most beams a web or API caller may ask for.")
    api_max_new_tokens: int = Field(64, ge=1, le=128, description="Most caption tokens a web or API caller may ask for.")
    request_header_timeout_s: float = Field(20.0, gt=0, le=3600, description="A request's headers must arrive within this many seconds of its first byte (or of the connection opening); slower clients get 408 and are disconnected.")
    request_body_timeout_s: float = Field(120.0, gt=0, le=3600, description="A request's body must arrive within this many seconds of its headers (an image of CAPBOT_MAX_IMAGE_BYTES at the slowest upload you serve); slower clients get 408 and are disconnected.")
    public_url: str = Field("", description="Public base URL of this capbot's web server (e.g. https://capbot.example.com); the review queue and digest link web captions under it, and Slack's install flow sends installers back to it + /slack/oauth_redirect. Empty = no such links.")

    # --- retraining ---
    retrain_cron: str | None = Field(None, description="Crontab expression for the embedded retraining schedule, e.g. '0 3 * * 0'; unset = off.")
    retrain_base_data: Path | None = Field(None, description="COCO-format dataset mixed with feedback when retraining.")
    retrain_min_feedback: int = Field(20, ge=1, description="Fewest new accepted corrections worth a retraining run.")
    retrain_feedback_fraction: float = Field(0.5, gt=0, le=1, description="Share of feedback rows in the retraining mix.")
    retrain_cider_tolerance: float = Field(0.05, ge=0, description="Largest drop of base-set CIDEr a promoted version may show, as a fraction of the active version's (0.05 = 5%).")
    retrain_rename_min_users: int = Field(3, ge=1, description="Distinct users (platform + user id) whose corrections must agree before retraining renames a word in the base data (e.g. every 'circle' to 'ball').")
    retrain_min_users: int = Field(3, ge=1, description="Fewest distinct users (platform + user id; on the web an API key or client address) the screened feedback of a retraining run must come from; fewer and the run is refused before training, with the reason recorded.")
    retrain_max_images_per_user: int = Field(25, ge=1, description="Most corrected images one user (on the web one API key or client address) contributes to one retraining run (their earliest); the rest is set aside and counted.")
    retrain_spam_min_images: int = Field(5, ge=2, description="A correction text written on at least this many unrelated images (sharing no word with the model's captions, nor much with each other) is set aside as copy-paste spam.")

    # --- review digest (docs/retraining.md, "Review queue"): off unless digest_cron is set ---
    digest_slack_channel: str | None = Field(None, description="Slack channel id (C..., G...) the review digest is posted to; needs CAPBOT_SLACK_BOT_TOKEN.")
    digest_discord_channel: str | None = Field(None, description="Discord channel id (a number) the review digest is posted to; needs CAPBOT_DISCORD_TOKEN.")
    digest_size: int = Field(3, ge=1, le=10, description="Images in each review digest: the top of `capbot feedback queue`.")
    digest_cron: str | None = Field(None, description="Crontab expression (UTC) of the review digest the bots post, e.g. '0 9 * * *' (daily 09:00); unset = off.")

    # --- Modal (docs/modal.md): read where `capbot modal deploy` runs; containers get the same values ---
    modal_app_name: str = Field("capbot", min_length=1, max_length=64, description="Modal app that `capbot modal deploy` creates and the modal captioner calls.")
    modal_volume_prefix: str = Field("capbot", min_length=1, max_length=48, description="Modal Volumes are named PREFIX-models, -datasets, -runs (checkpoints, TensorBoard) and -blobs (images).")
    modal_secret: str = Field("capbot", min_length=1, description="Modal Secret holding CAPBOT_DATABASE_URL (PostgreSQL), the bot tokens and any other CAPBOT_* settings for the containers.")
    modal_gpu: str = Field("L4", min_length=1, description="GPU type of the captioning class, e.g. T4, L4, A10, L40S, A100-80GB, H100.")
    modal_train_gpu: str = Field("L40S", min_length=1, description="GPU type of training, evaluation and scheduled retraining on Modal.")
    modal_batch_size: int = Field(32, ge=1, le=1000, description="Most images one GPU batch gathers from concurrent callers (@modal.batched).")
    modal_batch_wait_ms: int = Field(50, ge=0, le=10_000, description="How long a GPU batch waits for more images before it runs.")
    modal_scaledown_window_s: int = Field(300, ge=2, le=3600, description="Idle seconds before a GPU captioning container shuts down.")
    modal_min_containers: int = Field(0, ge=0, le=100, description="GPU captioning containers kept warm even when idle (no cold starts; billed while idle).")
    modal_max_containers: int = Field(5, ge=1, le=1000, description="GPU captioning containers at most (a cost ceiling); beyond it images wait in Modal's queue. At least CAPBOT_MODAL_MIN_CONTAINERS.")
    modal_web_min_containers: int = Field(0, ge=0, le=100, description="Web endpoint containers (page, API, /slack/events) kept warm; 1 answers Slack without a cold start.")
    modal_retrain_cron: str = Field("0 3 * * 0", description="Modal Cron (UTC) of the scheduled retraining; empty = no schedule.")
    modal_sweep_cron: str = Field("17 * * * *", description="Modal Cron (UTC) of the sweep that removes image files past their retention (docs/privacy.md); empty = no schedule.")
    modal_call_timeout_s: float = Field(120.0, gt=0, le=140, description="Seconds one caption request waits for the Modal GPU class in all (a cold start included); at most 140, under Modal's 150 s web request limit. An input that times out is left to finish, never cancelled (that would interrupt its whole GPU batch).")
    modal_db_pool_size: int = Field(2, ge=1, le=50, description="PostgreSQL connections each Modal container (web, GPU, Discord, jobs) keeps at most; no overflow. Total: this times the containers running (docs/modal.md, Connections).")

    # --- logging ---
    log_level: str = Field("INFO", description="Python logging level.")
    log_json: bool = Field(False, description="Log one JSON object per line instead of key=value text.")

    @field_validator("confidence_views", mode="before")
    @classmethod
    def _auto_views(cls, value):
        if isinstance(value, str) and value.strip().lower() in ("", "auto"):
            return None  # the device decides (`inference.views.views_for`)
        return value

    @field_validator("database_url")
    @classmethod
    def _normalise_postgres_url(cls, url: str) -> str:
        # Hosting providers hand out postgres:// URLs; SQLAlchemy needs a dialect+driver name.
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                url = "postgresql+psycopg://" + url[len(prefix):]
        if url:
            _check_database_url(url)
        return url

    @field_validator("slack_api_url", "discord_api_url", "discord_gateway_url")
    @classmethod
    def _absolute_url(cls, url: str, info) -> str:
        # Checked here, so a typo stops start-up with the setting's name instead of a chat-worded refusal later.
        schemes = ("ws", "wss") if info.field_name == "discord_gateway_url" else ("http", "https")
        parts = urlsplit(url)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"must be an absolute {' or '.join(s + '://' for s in schemes)} URL, got {url!r}")
        return url

    @field_validator("modal_retrain_cron", "modal_sweep_cron")
    @classmethod
    def _five_cron_fields(cls, cron: str) -> str:
        # Modal's Cron takes standard five-field crontab lines; catch a mistake before a deploy does.
        cron = cron.strip()
        if cron and len(cron.split()) != 5:
            raise ValueError(f"a crontab line has 5 fields (minute hour day month weekday), got {cron!r}")
        return cron

    @model_validator(mode="after")
    def _gpu_pool(self) -> "Settings":
        if self.modal_max_containers < self.modal_min_containers:
            raise ValueError(f"CAPBOT_MODAL_MAX_CONTAINERS ({self.modal_max_containers}) is below "
                             f"CAPBOT_MODAL_MIN_CONTAINERS ({self.modal_min_containers})")
        return self

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, url: str) -> str:
        url = url.strip()
        parts = urlsplit(url)
        if url and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError(f"must be an absolute http:// or https:// URL (or empty), got {url!r}")
        return url.rstrip("/")

    @field_validator("digest_slack_channel", "digest_discord_channel")
    @classmethod
    def _digest_channel(cls, channel: str | None, info) -> str | None:
        # Checked at start-up, so a digest that could never be posted stops `capbot run` with the setting's name.
        channel = (channel or "").strip() or None
        if channel is None:
            return None
        slack = info.field_name == "digest_slack_channel"
        if slack and not re.fullmatch(r"[CGD][A-Z0-9]{2,}", channel):
            raise ValueError(f"must be a Slack channel id like C0123ABCD (not a #name), got {channel!r}")
        if not slack and not re.fullmatch(r"[0-9]{5,20}", channel):
            raise ValueError(f"must be a Discord channel id (a number; Developer Mode > Copy Channel ID), got {channel!r}")
        token = "slack_bot_token" if slack else "discord_token"
        if info.data.get(token) is None:
            raise ValueError(f"is set but CAPBOT_{token.upper()} is not, so there is no bot to post the digest")
        return channel

    @field_validator("digest_cron")
    @classmethod
    def _digest_cron(cls, cron: str | None, info) -> str | None:
        cron = (cron or "").strip() or None
        if cron is None:
            return None
        from training.scheduler import InvalidCron, parse_cron

        try:
            parse_cron(cron, setting="digest_cron")
        except InvalidCron as exc:
            raise ValueError(exc.message) from None
        if not (info.data.get("digest_slack_channel") or info.data.get("digest_discord_channel")):
            raise ValueError("is set but neither CAPBOT_DIGEST_SLACK_CHANNEL nor CAPBOT_DIGEST_DISCORD_CHANNEL is, "
                             "so the digest has nowhere to go")
        return cron

    @field_validator("retention_sweep_cron")
    @classmethod
    def _sweep_cron(cls, cron: str) -> str:
        cron = cron.strip()
        if cron:
            from training.scheduler import InvalidCron, parse_cron

            try:
                parse_cron(cron, setting="retention_sweep_cron")
            except InvalidCron as exc:
                raise ValueError(exc.message) from None
        return cron

    @model_validator(mode="after")
    def _slack_install_flow(self) -> "Settings":
        # Checked at start-up: a half-configured install flow would show Slack's error page to the installer.
        if self.slack_client_id is None and self.slack_client_secret is None:
            return self
        if not (self.slack_client_id or "").strip() or self.slack_client_secret is None:
            raise ValueError("CAPBOT_SLACK_CLIENT_ID and CAPBOT_SLACK_CLIENT_SECRET go together (Basic Information > "
                             "App Credentials): set both for the install flow, or neither")
        if self.slack_bot_token is not None:
            raise ValueError("CAPBOT_SLACK_BOT_TOKEN (one workspace) and CAPBOT_SLACK_CLIENT_ID (any workspace that "
                             "installs capbot) are both set: choose one; with the client id each workspace's token "
                             "comes from its installation")
        if self.slack_app_token is not None:
            raise ValueError("CAPBOT_SLACK_CLIENT_ID needs HTTP events (/slack/events), not Socket Mode: unset "
                             "CAPBOT_SLACK_APP_TOKEN")
        if not self.public_url:
            raise ValueError("CAPBOT_SLACK_CLIENT_ID is set but CAPBOT_PUBLIC_URL is not: Slack sends installers back "
                             "to CAPBOT_PUBLIC_URL/slack/oauth_redirect, so set it to this server's public https URL")
        return self

    @property
    def slack_install_flow(self) -> bool:
        """Whether Slack workspaces install capbot through OAuth (each with its own token)."""
        return self.slack_client_id is not None

    @field_validator("trusted_proxies")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        for entry in _split(value):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/8)") from None
        return value

    @property
    def api_key_list(self) -> tuple[str, ...]:
        """The configured API keys (empty: the API is open)."""
        return tuple(_split(self.api_keys.get_secret_value())) if self.api_keys else ()

    @property
    def admin_key_list(self) -> tuple[str, ...]:
        """The keys that open the operator view: the admin key, else the API keys (empty: it is off)."""
        if self.admin_key and self.admin_key.get_secret_value().strip():
            return (self.admin_key.get_secret_value().strip(),)
        return self.api_key_list

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """`trusted_proxies` parsed."""
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in _split(self.trusted_proxies))

    @model_validator(mode="after")
    def _derive_paths(self) -> "Settings":
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'capbot.db').as_posix()}"
        if self.blob_dir is None:
            self.blob_dir = self.data_dir / "blobs"
        return self

    @property
    def models_dir(self) -> Path:
        """Where trained model versions are written."""
        return self.data_dir / "models"

    @property
    def runs_dir(self) -> Path:
        """Where training runs keep checkpoints and TensorBoard logs."""
        return self.data_dir / "runs"


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def get_settings(**overrides: object) -> Settings:
    """Build settings from the environment and `.env`, with explicit keyword overrides on top."""
    return Settings(**overrides)


def _check_database_url(url: str) -> None:
    """Refuse a URL capbot cannot store to, naming what it accepts (not SQLAlchemy's plugin error later)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"is not a database URL: {url.split('@')[-1]!r}; use sqlite:///PATH or postgresql://...") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite:///PATH or postgresql://...")

