"""`ModalCaptioner`: the `Captioner` that sends images to the deployed GPU class (`capbot/modal/app.py`).

Every image first goes through the same intake as local captioning (`load_image`), so a bad image is
refused here with its `ImageError` and never costs GPU time; one the GPU side still refuses comes back as
the same typed error. Each image is one call into the `@modal.batched` method, which gathers calls from
every caller into GPU batches.

One `caption()` waits at most `timeout_s` in all, whatever the number of images (the web endpoint's
requests must end within Modal's 150 s limit). A call still pending then is left to finish, never
cancelled and never sent again: cancelling one input of a `@modal.batched` batch interrupts the whole
batch, every other caller's images with it. Every failure becomes one `ModalServiceError` whose message
says what is wrong: no credentials, app not deployed, Modal unreachable, timeout, or a remote crash.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from typing import Any, Callable, Sequence

from PIL import Image

from storage.errors import UserError
from inference.generation import check_options
from inference.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, load_image
from inference.modal_wire import caption_from_wire, options_to_wire
from inference.types import Caption, GenerationOptions, ImageInput

log = logging.getLogger(__name__)

Lookup = Callable[[str, str], Any]  # (app name, class name) -> the class; `cls().caption.spawn(...)` starts a call
UNKNOWN_VERSION = "unknown (no caption yet)"


class ModalServiceError(UserError):
    """Modal cannot do what was asked; `reason` says why: modal_auth (no credentials), modal_not_deployed,
    modal_unreachable, modal_timeout, modal_remote_error (the remote code crashed)."""


def deployed_class(app_name: str, class_name: str) -> Any:
    """The deployed class, looked up by name (lazy: nothing is sent until the first call)."""
    import modal

    return modal.Cls.from_name(app_name, class_name)


class ModalCaptioner:
    """Captions images with the GPU class of a deployed capbot Modal app."""

    def __init__(
        self,
        app_name: str,
        class_name: str,
        *,
        timeout_s: float = 120.0,
        max_image_bytes: int = DEFAULT_MAX_BYTES,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
        default_options: GenerationOptions | None = None,
        lookup: Lookup = deployed_class,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app_name, self.class_name = app_name, class_name
        self.timeout_s = timeout_s  # one caption() call's whole wait
        self._clock = clock
        self.max_image_bytes, self.max_image_pixels = max_image_bytes, max_image_pixels
        self.default_options = default_options or GenerationOptions()
        check_options(self.default_options)
        self._lookup = lookup
        self._method: Any = None
        self._lock = threading.Lock()
        self._version = UNKNOWN_VERSION

    @property
    def model_version(self) -> str:
        """The version that wrote the most recent caption (the GPU class serves the registry's active one)."""
        return self._version

    def caption(self, images: Sequence[ImageInput], options: GenerationOptions | None = None) -> list[Caption]:
        """Caption each image, in order; raises `ImageError` for a bad image and `ModalServiceError` when
        the deployed class cannot answer."""
        options = options or self.default_options
        check_options(options)
        payloads = [self._intake(image) for image in images]  # all refused locally before any GPU call
        wire_options = options_to_wire(options)
        with ModalErrors(self.app_name, self.class_name):
            method = self._caption_method()
            calls = [method.spawn(payload, wire_options) for payload in payloads]
            deadline = self._clock() + self.timeout_s
            results = [self._wait(call, deadline) for call in calls]
        captions = [caption_from_wire(result) for result in results]
        if captions:
            self._version = captions[-1].model_version
        return captions

    def check(self) -> "ModalCaptioner":
        """Look the deployed class up now (a long-running caller, such as `capbot run`, fails at start-up
        instead of at the first image): `ModalServiceError` without credentials or deployment."""
        with ModalErrors(self.app_name, self.class_name):
            self._lookup(self.app_name, self.class_name).hydrate()
        return self

    def close(self) -> None:
        """Nothing to release: the model lives in the deployed class."""

    def _intake(self, image: ImageInput) -> bytes:
        decoded = load_image(image, max_bytes=self.max_image_bytes, max_pixels=self.max_image_pixels)
        if isinstance(image, (bytes, bytearray, memoryview)):
            return bytes(image)  # the original file: smaller than any re-encoding, and checked again remotely
        return encode_png(decoded)

    def _caption_method(self) -> Any:
        with self._lock:
            if self._method is None:
                self._method = self._lookup(self.app_name, self.class_name)().caption
            return self._method

    def _wait(self, call: Any, deadline: float) -> dict:
        """The call's result, waiting no later than `deadline`; a call still pending is left to finish."""
        from modal.exception import TimeoutError as ModalTimeout

        try:
            return call.get(timeout=max(0.0, deadline - self._clock()))
        except ModalTimeout as exc:  # the GPU call itself ran past its time limit, or its output expired
            raise self._timed_out(f"the call ended without a result ({type(exc).__name__})") from None
        except TimeoutError:  # the builtin: still pending (a cold start, a long queue)
            raise self._timed_out("still waiting for a GPU container; it is left to finish") from None

    def _timed_out(self, detail: str) -> "ModalServiceError":
        return ModalServiceError(
            f"the Modal captioning class did not answer within {self.timeout_s:g} s ({detail}); "
            f"see `modal app logs {self.app_name}`", reason="modal_timeout")


class ModalErrors:
    """Context manager turning what Modal raises into one `ModalServiceError` line about `target` (a
    class or function of the app); user errors pass through unchanged."""

    def __init__(self, app_name: str, target: str, *, not_found: str | None = None) -> None:
        self.app_name, self.target = app_name, target
        self.not_found = not_found  # what a NotFoundError means here, when not "the app is not deployed"

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:  # type: ignore[no-untyped-def]
        if exc is None or isinstance(exc, UserError) or not isinstance(exc, Exception):
            return False
        raise self.translate(exc) from exc

    def translate(self, exc: Exception) -> ModalServiceError:
        """The one-line error for `exc`."""
        from modal import exception as modal_errors

        if isinstance(exc, modal_errors.AuthError):
            return ModalServiceError(
                "no Modal credentials: run `modal token new`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET",
                reason="modal_auth")
        if isinstance(exc, modal_errors.NotFoundError) and self.not_found:
            return ModalServiceError(f"{self.not_found} ({_brief(exc)})", reason="modal_not_found")
        if isinstance(exc, modal_errors.NotFoundError):
            return ModalServiceError(
                f"the Modal app {self.app_name!r} with {self.target!r} is not deployed: run `capbot modal deploy` "
                f"({_brief(exc)})", reason="modal_not_deployed")
        if isinstance(exc, (modal_errors.ConnectionError, ConnectionError, OSError)):
            return ModalServiceError(f"cannot reach Modal: {_brief(exc)}", reason="modal_unreachable")
        log.error("a Modal call failed", exc_info=exc, extra={"app": self.app_name, "target": self.target})
        return ModalServiceError(
            f"{self.target} on Modal failed: {type(exc).__name__}: {_brief(exc)}; see `modal app logs "
            f"{self.app_name}`", reason="modal_remote_error")


def _brief(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes of a PIL image (what the caller sends for an image given as pixels)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
