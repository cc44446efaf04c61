"""The platform-free bot: what happens when an image is posted, a caption is asked for, or a correction comes in.

Adapters (Slack, Discord) parse platform payloads into an `Origin` plus bytes or ids, call `BotCore`, and
format the `Reply` it returns. The core never imports a platform SDK. Caption work runs on a bounded
`WorkQueue` behind per-user rate limits; the caption methods return a `Future[Reply]` that always resolves
to a `Reply` (never an exception), so a busy, refused or failed request is always answered.

A caption reply carries the model's confidence and its alternatives; below `low_confidence` it is marked
`unsure`, and every surface then says so and invites a correction. Correction forms offer the alternatives:
`submit_correction(..., alternative=i)` stores the i-th one unless the user typed something else.

Privacy (docs/privacy.md): the first caption reply in a channel carries a `notice` of what is kept;
`privacy`, `community_settings`, `set_training`, `set_retention` and `my_data` answer the matching commands
the same way on every platform. Community choices are stored per workspace or server (`Origin.workspace`).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum
from typing import Callable, Mapping, Protocol, Union

from bots import messages
from bots.ratelimit import Clock, RateLimiter
from bots.work_queue import QueueFull, WorkQueue
from storage.communities import MAX_RETENTION_DAYS
from storage.errors import UserError
from inference.types import Caption, Captioner, GenerationOptions

log = logging.getLogger(__name__)

DEFAULT_LOW_CONFIDENCE = 0.5  # below this a caption is shown as a guess (see `Reply.unsure`)
# Refused images (not an image, truncated, a private URL...) give back their caption slot, so a user who picked
# the wrong files can still caption the right ones; they count against their own, this many times higher, limit.
REFUSED_IMAGE_ALLOWANCE = 4

CHAT_PLATFORMS = ("slack", "discord")  # where channels get a privacy notice with their first caption
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
    """What an adapter should say. Only CAPTION replies carry a caption id, model version, confidence,
    alternatives and timings."""

    kind: ReplyKind
    text: str
    model_version: str | None = None
    caption_id: int | None = None
    reason: str | None = None
    confidence: float | None = None  # 0..1 (None: the captioner gave none)
    alternatives: tuple[str, ...] = ()  # other captions the model considered, best first
    unsure: bool = False  # confidence below the core's `low_confidence`: say so and invite a correction
    timings_ms: Mapping[str, float] = field(default_factory=dict)  # queue, caption (+ the engine's own parts)
    retry_after_s: float | None = None  # BUSY replies: how long until trying again can succeed
    notice: str | None = None  # CAPTION replies, once per channel: what the bot keeps (show it with the caption)

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
class CaptionInfo:
    """A stored caption as the core shows it: what a correction form or the API needs, and whose it is."""

    id: int
    text: str
    model_version: str
    platform: str
    user: str | None
    confidence: float | None = None
    alternatives: tuple[str, ...] = ()
    created_at: datetime | None = None


@dataclass(frozen=True)
class CommunityView:
    """What applies in a community (Slack workspace, Discord server; `workspace` None outside one): the
    community's own choices where it made them, the operator's defaults elsewhere."""

    platform: str
    workspace: str | None
    training_consent: bool  # may its images and corrections train the model?
    consent_chosen: bool  # True: an admin chose; False: the operator's default applies
    retention_days: int | None  # days uncorrected images are kept in effect (None: until forgotten; 0: none)
    community_retention_days: int | None  # the community's own choice (None: none made)
    operator_retention_days: int | None  # CAPBOT_IMAGE_RETENTION_DAYS
    auto_caption_default: bool  # channels nobody switched
    channels: tuple[tuple[str, bool], ...] = ()  # (channel id, auto-captioning on) for switched channels


@dataclass(frozen=True)
class DataExport:
    """A person's own data as one zip file (`my_data`)."""

    filename: str
    data: bytes
    captions: int
    corrections: int
    images: int  # image files included
    images_gone: int  # images referred to whose files are not kept (or were left out to fit)


class CoreObserver(Protocol):
    """Told what the core did, for metrics; every method must be quick and must not raise."""

    def captioned(self, platform: str, seconds: float) -> None: ...
    def caption_refused(self, platform: str, reason: str) -> None: ...
    def correction(self, platform: str, accepted: bool, reason: str) -> None: ...
    def rate_limited(self, platform: str, action: str) -> None: ...


class _NoObserver:
    def captioned(self, platform: str, seconds: float) -> None:
        pass

    def caption_refused(self, platform: str, reason: str) -> None:
        pass

    def correction(self, platform: str, accepted: bool, reason: str) -> None:
        pass

    def rate_limited(self, platform: str, action: str) -> None:
        pass


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
    def caption_info(self, caption_id: int) -> CaptionInfo | None: ...
    def add_correction(self, caption_id: int, origin: Origin, text: str) -> CorrectionOutcome: ...
    def add_confirmation(self, caption_id: int, origin: Origin) -> CorrectionOutcome: ...
    def forget_user(self, platform: str, user: str) -> ForgetCounts: ...
    def community(self, origin: Origin) -> CommunityView: ...
    def set_training_consent(self, origin: Origin, consent: bool | None) -> None: ...
    def set_image_retention(self, origin: Origin, days: int | None) -> None: ...
    def claim_privacy_notice(self, origin: Origin) -> bool: ...
    def user_data(self, platform: str, user: str, *, include_images: bool = True) -> DataExport: ...


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
        correction_rate_limit_per_minute: int = 20,
        low_confidence: float = DEFAULT_LOW_CONFIDENCE,
        observer: CoreObserver | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.captioner = captioner
        self.store = store
        self.fetch_url = fetch_url
        self.options = options or GenerationOptions()
        self.rate_limit_per_minute = rate_limit_per_minute
        self.correction_rate_limit_per_minute = correction_rate_limit_per_minute
        self.low_confidence = low_confidence
        self.observer: CoreObserver = observer or _NoObserver()
        self._limiter = RateLimiter(rate_limit_per_minute, 60.0, clock=clock)
        self.refused_rate_limit_per_minute = rate_limit_per_minute * REFUSED_IMAGE_ALLOWANCE
        self._refused_limiter = RateLimiter(self.refused_rate_limit_per_minute, 60.0, clock=clock)
        self._correction_limiter = RateLimiter(correction_rate_limit_per_minute, 60.0, clock=clock)
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
        return self._enqueue(origin, image, self.options)

    def caption_requested(self, origin: Origin, image: ImageSource | None = None, url: str | None = None,
                          options: GenerationOptions | None = None) -> Future:
        """Someone asked for a caption of an attachment (`image`) or a URL; the URL is fetched safely on the worker.

        `options` overrides the core's generation options for this request (the web API's beams, length and
        alternatives); the engine refuses impossible ones with a REFUSED reply (reason "bad_options").
        """
        if image is None and url is None:
            return _done(Reply(ReplyKind.REFUSED, messages.NO_IMAGE, reason="no_image"))
        source: ImageSource = image if image is not None else (lambda: self.fetch_url(url))
        return self._enqueue(origin, source, options or self.options)

    # --- corrections, preferences (synchronous: quick database work) ---

    def caption_text(self, caption_id: int) -> str | None:
        """The stored text of a caption (to pre-fill a correction form), or None if it no longer exists."""
        return self.store.caption_text(caption_id)

    def caption_info(self, caption_id: int) -> CaptionInfo | None:
        """The stored caption with its alternatives and confidence (for correction forms), or None."""
        return self.store.caption_info(caption_id)

    def submit_correction(self, caption_id: int, origin: Origin, text: str, alternative: int | None = None) -> Reply:
        """Validate and store a correction: DONE with thanks, REFUSED with storage's reason, or BUSY when the
        user sends corrections faster than `correction_rate_limit_per_minute`.

        `alternative` is the index of an alternative the user picked in a correction form; it is stored
        unless the text was changed from the caption (a typed correction wins over a picked one).
        """
        key = (origin.platform, origin.user)
        decision = self._correction_limiter.check(key)
        if not decision.allowed:
            self.observer.rate_limited(origin.platform, "correction")
            text = messages.corrections_limited(self.correction_rate_limit_per_minute, decision.retry_after_s)
            return Reply(ReplyKind.BUSY, text, caption_id=caption_id, reason="rate_limited",
                         retry_after_s=decision.retry_after_s)
        try:
            if alternative is not None:
                text = self._picked_text(caption_id, text, alternative)
            outcome = self.store.add_correction(caption_id, origin, text)
        except UserError as exc:
            self.observer.correction(origin.platform, False, exc.reason)
            return Reply(ReplyKind.REFUSED, exc.message, caption_id=caption_id, reason=exc.reason)
        self.observer.correction(origin.platform, outcome.accepted, outcome.reason or "accepted")
        if outcome.accepted:
            log.info("correction stored", extra={"caption_id": caption_id, "platform": origin.platform})
            return Reply(ReplyKind.DONE, messages.CORRECTION_THANKS, caption_id=caption_id)
        return Reply(ReplyKind.REFUSED, outcome.message, caption_id=caption_id, reason=outcome.reason)

    def confirm_caption(self, caption_id: int, origin: Origin) -> Reply:
        """Store the user's word that the caption is right (feedback, like a correction: it counts against the
        same per-user limit and replaces the user's earlier answer about the image): DONE, REFUSED or BUSY."""
        decision = self._correction_limiter.check((origin.platform, origin.user))
        if not decision.allowed:
            self.observer.rate_limited(origin.platform, "correction")
            text = messages.corrections_limited(self.correction_rate_limit_per_minute, decision.retry_after_s)
            return Reply(ReplyKind.BUSY, text, caption_id=caption_id, reason="rate_limited",
                         retry_after_s=decision.retry_after_s)
        outcome = self.store.add_confirmation(caption_id, origin)
        self.observer.correction(origin.platform, outcome.accepted, "confirmed" if outcome.accepted else outcome.reason)
        if outcome.accepted:
            log.info("confirmation stored", extra={"caption_id": caption_id, "platform": origin.platform})
            return Reply(ReplyKind.DONE, messages.CONFIRMATION_THANKS, caption_id=caption_id)
        return Reply(ReplyKind.REFUSED, outcome.message, caption_id=caption_id, reason=outcome.reason)

    def _picked_text(self, caption_id: int, typed: str, alternative: int) -> str:
        """The text to store when the user picked alternative `alternative` and the text box holds `typed`."""
        info = self.store.caption_info(caption_id)
        if info is None:
            return typed  # storage refuses it with "unknown_caption"
        if typed.strip() and " ".join(typed.split()) != " ".join(info.text.split()):
            return typed
        if not 0 <= alternative < len(info.alternatives):
            raise UserError(messages.UNKNOWN_ALTERNATIVE, reason="unknown_alternative")
        return info.alternatives[alternative]

    def queue_depth(self) -> int:
        """Caption jobs waiting for a worker."""
        return self._queue.pending()

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

    # --- privacy and community settings ---

    def privacy(self, origin: Origin) -> Reply:
        """What is kept here, for how long, whether it trains the model, and how to change each."""
        return Reply(ReplyKind.DONE, messages.privacy_text(self.store.community(origin)))

    def community_settings(self, origin: Origin) -> Reply:
        """The community's choices: auto-captioning per channel, training consent and image retention."""
        return Reply(ReplyKind.DONE, messages.settings_text(self.store.community(origin), origin.channel))

    def set_training(self, origin: Origin, consent: bool, *, allowed: bool) -> Reply:
        """Let the community's images and corrections train the model, or stop it (the next retraining run
        leaves them out); `allowed`: the adapter's verdict that the user administers the community."""
        refused = self._community_refusal(origin, allowed)
        if refused:
            return refused
        self.store.set_training_consent(origin, consent)
        log.info("training consent changed", extra={"platform": origin.platform, "workspace": origin.workspace,
                                                    "consent": consent})
        return Reply(ReplyKind.DONE, messages.training_changed(self.store.community(origin)))

    def set_retention(self, origin: Origin, days: int | None, *, allowed: bool) -> Reply:
        """Keep the community's uncorrected images at most `days` (0: none; None: the operator's default)."""
        refused = self._community_refusal(origin, allowed)
        if refused:
            return refused
        if days is not None and not 0 <= days <= MAX_RETENTION_DAYS:
            return Reply(ReplyKind.REFUSED, messages.BAD_RETENTION, reason="bad_retention")
        self.store.set_image_retention(origin, days)
        log.info("image retention changed", extra={"platform": origin.platform, "workspace": origin.workspace,
                                                   "days": days})
        return Reply(ReplyKind.DONE, messages.retention_changed(self.store.community(origin)))

    def my_data(self, origin: Origin, *, include_images: bool = True) -> DataExport:
        """Everything stored about the user on this platform, as one zip file (send it only to them)."""
        export = self.store.user_data(origin.platform, origin.user, include_images=include_images)
        log.info("user data exported", extra={"platform": origin.platform, "captions": export.captions,
                                             "images": export.images})
        return export

    def _community_refusal(self, origin: Origin, allowed: bool) -> Reply | None:
        if not origin.workspace:
            return Reply(ReplyKind.REFUSED, messages.NEEDS_COMMUNITY, reason="no_community")
        if not allowed:
            return Reply(ReplyKind.REFUSED, messages.COMMUNITY_FORBIDDEN, reason="forbidden")
        return None

    def mark_event_processed(self, platform: str, event_id: str) -> bool:
        """True the first time an event id is seen; False for a retried delivery (answer it not again)."""
        return self.store.mark_event_processed(platform, event_id)

    def close(self, wait: bool = True) -> None:
        """Finish queued work and stop the workers."""
        self._queue.close(wait=wait)

    # --- internals ---

    def _enqueue(self, origin: Origin, image: ImageSource, options: GenerationOptions) -> Future:
        key = (origin.platform, origin.user)
        decision = self._refused_limiter.peek(key)
        if decision.allowed:
            decision = self._limiter.check(key)
        if not decision.allowed:
            self.observer.rate_limited(origin.platform, "caption")
            text = messages.rate_limited(self.rate_limit_per_minute, decision.retry_after_s)
            return _done(Reply(ReplyKind.BUSY, text, reason="rate_limited", retry_after_s=decision.retry_after_s))
        queued_at = time.perf_counter()
        try:
            return self._queue.submit(lambda: self._caption_job(origin, image, options, queued_at, decision.at))
        except QueueFull:
            self._limiter.refund(key, decision.at)  # not served, so it should not count against the user
            log.warning("work queue full", extra={"platform": origin.platform})
            return _done(Reply(ReplyKind.BUSY, messages.BUSY, reason="queue_full"))

    def _caption_job(self, origin: Origin, image: ImageSource, options: GenerationOptions, queued_at: float,
                     slot: float | None = None) -> Reply:
        try:
            queue_ms = (time.perf_counter() - queued_at) * 1000
            data = image() if callable(image) else image
            started = time.perf_counter()
            caption = self.captioner.caption([data], options)[0]
            latency_ms = (time.perf_counter() - started) * 1000
            caption_id = self.store.record_caption(origin, data, caption, options, latency_ms)
        except UserError as exc:
            self._count_as_refused(origin, slot)
            self.observer.caption_refused(origin.platform, exc.reason)
            return Reply(ReplyKind.REFUSED, _sentence(exc.message), reason=exc.reason)
        except Exception:
            log.exception("caption job failed", extra={"platform": origin.platform, "channel": origin.channel})
            self.observer.caption_refused(origin.platform, "internal")
            return Reply(ReplyKind.ERROR, messages.ERROR, reason="internal")
        self.observer.captioned(origin.platform, latency_ms / 1000)
        reply = self.caption_reply(caption, caption_id, {"queue": queue_ms, "caption": latency_ms})
        return replace(reply, notice=self._first_notice(origin))

    def _first_notice(self, origin: Origin) -> str | None:
        """The privacy notice when this is the bot's first caption in a chat channel, else None."""
        if origin.platform not in CHAT_PLATFORMS:
            return None
        try:
            if self.store.claim_privacy_notice(origin):
                return messages.privacy_notice(self.store.community(origin))
        except Exception:  # the caption still goes out; the next one tries again
            log.exception("privacy notice failed", extra={"platform": origin.platform})
        return None

    def _count_as_refused(self, origin: Origin, slot: float | None) -> None:
        """Move a refused image's request from the caption limit to the (higher) limit of refused ones."""
        key = (origin.platform, origin.user)
        self._limiter.refund(key, slot)
        self._refused_limiter.check(key)

    def caption_reply(self, caption: Caption, caption_id: int, timings_ms: Mapping[str, float] | None = None) -> Reply:
        """The CAPTION reply for a stored caption: confidence, alternatives, and whether to sound unsure."""
        return Reply(
            ReplyKind.CAPTION, caption.text, model_version=caption.model_version, caption_id=caption_id,
            confidence=caption.confidence, alternatives=tuple(caption.alternatives),
            unsure=self.is_unsure(caption.confidence),
            timings_ms={**(timings_ms or {}), **{f"engine_{k}": v for k, v in caption.timings_ms.items()}},
        )

    def is_unsure(self, confidence: float | None) -> bool:
        """Whether a caption of this confidence should be presented as a guess (unknown confidence: no)."""
        return confidence is not None and confidence < self.low_confidence
