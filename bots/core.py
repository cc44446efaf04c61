"""The platform-free bot: what happens when an image is posted, a caption is asked for, or a correction comes in.

Adapters (Slack, Discord) parse platform payloads into an `Origin` plus bytes or ids, call `BotCore`, and
format the `Reply` it returns. The core never imports a platform SDK. Caption work runs on a bounded
`WorkQueue` behind per-user rate limits; the caption methods return a `Future[Reply]` that always resolves
to a `Reply` (never an exception), so a busy, refused or failed request is always answered.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Protocol, Union

from bots import messages
from bots.ratelimit import Clock, RateLimiter
from bots.work_queue import QueueFull, WorkQueue
from capbot.errors import UserError
from inference.types import Caption, Captioner, GenerationOptions

log = logging.getLogger(__name__)

ImageSource = Union[bytes, Callable[[], bytes]]  # bytes, or a loader run on the worker (downloads stay off the ack path)
UrlFetcher = Callable[[str], bytes]  # e.g. functools.partial(bots.fetch.fetch_image_bytes, max_bytes=...)


@dataclass(frozen=True)
class Origin:
    """Who asked, and where: plain ids from the platform."""

    platform: str  # "slack" | "discord" | ...
    workspace: str | None  # Slack team id / Discord guild id (None in DMs)
    channel: str
    user: str
    message_ref: str | None = None  # the platform's id of the message holding the image


class ReplyKind(str, Enum):
    CAPTION = "caption"  # `text` is the bare caption: show it with the model version (messages.caption_line) and the "Suggest a better caption" control
    DONE = "done"  # an action succeeded (correction stored, opt-out, ...): show `text`
    REFUSED = "refused"  # the user can fix something: show `text` (reason says why, machine-readable)
    BUSY = "busy"  # queue full or rate-limited: show `text`, nothing was done
    SKIPPED = "skipped"  # nothing to say (auto-captioning off, user opted out): stay silent
    ERROR = "error"  # a bug; logged with its traceback: show `text`


@dataclass(frozen=True)
class Reply:
    """What an adapter should say. Only CAPTION replies carry a caption id and model version."""

    kind: ReplyKind
    text: str
    model_version: str | None = None
    caption_id: int | None = None
    reason: str | None = None

    @property
    def silent(self) -> bool:
        """True when the adapter should post nothing."""
        return self.kind is ReplyKind.SKIPPED


@dataclass(frozen=True)
class CorrectionOutcome:
    """The store's verdict on a correction."""

    accepted: bool
    message: str = ""  # for a refusal: why, fit to show the user
    reason: str = ""  # for a refusal: machine-readable code from storage
    correction_id: int | None = None


@dataclass(frozen=True)
class ForgetCounts:
    """What `forget_user` deleted."""

    captions: int = 0
    corrections: int = 0
    images: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class BotStore(Protocol):
    """The persistence the core needs; `bots.store.SqlBotStore` implements it over the storage layer."""

    def mark_event_processed(self, platform: str, event_id: str) -> bool: ...
    def auto_caption_enabled(self, origin: Origin) -> bool: ...
    def set_auto_caption(self, origin: Origin, enabled: bool) -> None: ...
    def is_opted_out(self, platform: str, user: str) -> bool: ...
    def set_opt_out(self, platform: str, user: str, opted_out: bool) -> None: ...
    def record_caption(
        self, origin: Origin, image: bytes, caption: Caption, options: GenerationOptions, latency_ms: float
    ) -> int: ...
    def caption_text(self, caption_id: int) -> str | None: ...
    def add_correction(self, caption_id: int, origin: Origin, text: str) -> CorrectionOutcome: ...
    def forget_user(self, platform: str, user: str) -> ForgetCounts: ...


def _sentence(message: str) -> str:
    """Engine errors are lower-case fragments ("the file is empty"); say them as a sentence."""
    if message[:1].islower():
        return f"I couldn't caption that image: {message.rstrip('.')}."
    return message


def _done(reply: Reply) -> Future:
    future: Future = Future()
    future.set_result(reply)
    return future


class BotCore:
    """Product logic shared by every chat platform. Thread-safe; call `close()` on shutdown."""

    def __init__(
        self,
        captioner: Captioner,
        store: BotStore,
        *,
        fetch_url: UrlFetcher,
        options: GenerationOptions | None = None,
        workers: int = 1,
        queue_size: int = 64,
        rate_limit_per_minute: int = 10,
        clock: Clock | None = None,
    ) -> None:
        self.captioner = captioner
        self.store = store
        self.fetch_url = fetch_url
        self.options = options or GenerationOptions()
        self.rate_limit_per_minute = rate_limit_per_minute
        self._limiter = RateLimiter(rate_limit_per_minute, 60.0, clock=clock)
        self._queue = WorkQueue(workers=workers, maxsize=queue_size)

    # --- captions (queued) ---

    def image_posted(self, origin: Origin, image: ImageSource) -> Future:
        """An image appeared in a channel: caption it unless auto-captioning is off here or the user opted out."""
        try:
            if not self.store.auto_caption_enabled(origin):
                return _done(Reply(ReplyKind.SKIPPED, "", reason="channel_off"))
            if self.store.is_opted_out(origin.platform, origin.user):
                return _done(Reply(ReplyKind.SKIPPED, "", reason="opted_out"))
        except Exception:
            log.exception("checking channel and opt-out failed", extra={"platform": origin.platform})
            return _done(Reply(ReplyKind.ERROR, messages.ERROR, reason="internal"))
        return self._enqueue(origin, image)

    def caption_requested(self, origin: Origin, image: ImageSource | None = None, url: str | None = None) -> Future:
        """Someone asked for a caption of an attachment (`image`) or a URL; the URL is fetched safely on the worker."""
        if image is None and url is None:
            return _done(Reply(ReplyKind.REFUSED, messages.NO_IMAGE, reason="no_image"))
        source: ImageSource = image if image is not None else (lambda: self.fetch_url(url))
        return self._enqueue(origin, source)

    # --- corrections, preferences (synchronous: quick database work) ---

    def caption_text(self, caption_id: int) -> str | None:
        """The stored text of a caption (to pre-fill a correction form), or None if it no longer exists."""
        return self.store.caption_text(caption_id)

    def submit_correction(self, caption_id: int, origin: Origin, text: str) -> Reply:
        """Validate and store a correction: DONE with thanks, or REFUSED with storage's reason."""
        try:
            outcome = self.store.add_correction(caption_id, origin, text)
        except UserError as exc:
            return Reply(ReplyKind.REFUSED, exc.message, reason=exc.reason)
        if outcome.accepted:
            log.info("correction stored", extra={"caption_id": caption_id, "platform": origin.platform})
            return Reply(ReplyKind.DONE, messages.CORRECTION_THANKS, caption_id=caption_id)
        return Reply(ReplyKind.REFUSED, outcome.message, caption_id=caption_id, reason=outcome.reason)

    def set_opt_out(self, origin: Origin, opted_out: bool = True) -> Reply:
        """Opt the user out of (or back into) auto-captions and training use of their corrections."""
        self.store.set_opt_out(origin.platform, origin.user, opted_out)
        return Reply(ReplyKind.DONE, messages.OPTED_OUT if opted_out else messages.OPTED_IN)

    def forget_me(self, origin: Origin) -> Reply:
        """Delete the user's captions, corrections and images nobody else references."""
        counts = self.store.forget_user(origin.platform, origin.user)
        log.info("user forgotten", extra={"platform": origin.platform, "captions": counts.captions})
        text = messages.FORGOTTEN.format(captions=counts.captions, corrections=counts.corrections, images=counts.images)
        return Reply(ReplyKind.DONE, text)

    def set_channel(self, origin: Origin, enabled: bool, *, allowed: bool) -> Reply:
        """Turn auto-captioning on or off; `allowed` is the adapter's permission verdict for this user."""
        if not allowed:
            return Reply(ReplyKind.REFUSED, messages.CHANNEL_FORBIDDEN, reason="forbidden")
        self.store.set_auto_caption(origin, enabled)
        return Reply(ReplyKind.DONE, messages.CHANNEL_ON if enabled else messages.CHANNEL_OFF)

    def mark_event_processed(self, platform: str, event_id: str) -> bool:
        """True the first time an event id is seen; False for a retried delivery (answer it not again)."""
        return self.store.mark_event_processed(platform, event_id)

    def close(self, wait: bool = True) -> None:
        """Finish queued work and stop the workers."""
        self._queue.close(wait=wait)

    # --- internals ---

    def _enqueue(self, origin: Origin, image: ImageSource) -> Future:
        key = (origin.platform, origin.user)
        decision = self._limiter.check(key)
        if not decision.allowed:
            text = messages.rate_limited(self.rate_limit_per_minute, decision.retry_after_s)
            return _done(Reply(ReplyKind.BUSY, text, reason="rate_limited"))
        try:
            return self._queue.submit(lambda: self._caption_job(origin, image))
        except QueueFull:
            self._limiter.refund(key)  # not served, so it should not count against the user
            log.warning("work queue full", extra={"platform": origin.platform})
            return _done(Reply(ReplyKind.BUSY, messages.BUSY, reason="queue_full"))

    def _caption_job(self, origin: Origin, image: ImageSource) -> Reply:
        try:
            data = image() if callable(image) else image
            started = time.perf_counter()
            caption = self.captioner.caption([data], self.options)[0]
            latency_ms = (time.perf_counter() - started) * 1000
            caption_id = self.store.record_caption(origin, data, caption, self.options, latency_ms)
        except UserError as exc:
            return Reply(ReplyKind.REFUSED, _sentence(exc.message), reason=exc.reason)
        except Exception:
            log.exception("caption job failed", extra={"platform": origin.platform, "channel": origin.channel})
            return Reply(ReplyKind.ERROR, messages.ERROR, reason="internal")
        return Reply(ReplyKind.CAPTION, caption.text, model_version=caption.model_version, caption_id=caption_id)
