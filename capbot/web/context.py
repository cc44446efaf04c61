"""What the web routes share: the bot core, the web settings, the database, the model version and metrics."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import Engine

from bots.connection import ConnectionTracker
from bots.core import BotCore, CaptionInfo, Origin
from capbot.metrics import Metrics
from capbot.web.errors import ApiError
from capbot.web.identity import Caller, Network
from inference.device import EngineConfigError
from inference.spec import choose_options
from inference.types import GenerationOptions
from storage.blobs import BlobStore

PLATFORM = "web"


@dataclass(frozen=True)
class WebConfig:
    """The web server's own settings (built from `capbot.settings.Settings` by `from_settings`)."""

    max_image_bytes: int
    api_keys: tuple[str, ...] = ()
    admin_keys: tuple[str, ...] = ()  # open the operator view and /v1/admin; none: both are off
    trusted_proxies: tuple[Network, ...] = ()
    max_beams: int = 8
    max_new_tokens: int = 64
    body_timeout_s: float | None = None  # a request body must arrive within this (None: no bound)

    @classmethod
    def from_settings(cls, settings) -> "WebConfig":  # type: ignore[no-untyped-def]
        """The web part of capbot's settings."""
        return cls(
            max_image_bytes=settings.max_image_bytes,
            api_keys=settings.api_key_list,
            admin_keys=settings.admin_key_list,
            trusted_proxies=settings.trusted_proxy_networks,
            max_beams=settings.api_max_beams,
            max_new_tokens=settings.api_max_new_tokens,
            body_timeout_s=settings.request_body_timeout_s,
        )


@dataclass
class WebContext:
    """Everything a route handler may use."""

    core: BotCore
    config: WebConfig
    model_version: Callable[[], str]
    engine: Engine | None = None  # readiness and the model registry; None in tests of the page alone
    metrics: Metrics = field(default_factory=Metrics)
    blobs: BlobStore | None = None  # the stored images: the operator view's thumbnails
    connections: tuple[ConnectionTracker, ...] = ()  # platform connections capbot opens itself (Discord, Socket Mode)

    @property
    def default_options(self) -> GenerationOptions:
        """The server's generation defaults (the bots use the same)."""
        return self.core.options

    def origin(self, caller: Caller) -> Origin:
        """The core's view of a web caller."""
        return Origin(platform=PLATFORM, workspace=None, channel=PLATFORM, user=caller.user)

    async def owned_caption(self, caller: Caller, caption_id: int) -> CaptionInfo:
        """The caller's own caption `caption_id`; anyone else's, or none, is the same 404 (ids are guessable)."""
        info = await asyncio.to_thread(self.core.caption_info, caption_id)
        if info is None or info.platform != PLATFORM or info.user != caller.user:
            raise ApiError(404, "unknown_caption", f"There is no caption {caption_id} of yours.")
        return info


def request_options(defaults: GenerationOptions, beams: int | None, max_tokens: int | None,
                    alternatives: int | None) -> GenerationOptions:
    """Generation options for one request: the caller's choices over the server's defaults, by the rule
    `capbot caption` follows too (`inference.spec.choose_options`)."""
    try:
        return choose_options(defaults, beams=beams, max_new_tokens=max_tokens, alternatives=alternatives)
    except EngineConfigError as exc:
        raise ApiError(422, "bad_options", exc.message.rstrip(".") + ".") from None
