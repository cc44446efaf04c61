"""`CaptionServer`: what the deployed GPU class does in one container.

It serves the registry's active version, captions the lists of image bytes `@modal.batched` hands it
(one result per input, a refused image included), and follows the registry: at most every `poll_s`
seconds a batch first asks which version is active; when that moved, the new model's files are
prepared (on Modal: the Volume reloaded when the directory arrived after the container started, see
`capbot.modal.volumes.VolumeModelFiles`) and loaded beside the old one, which keeps serving if anything
fails. Requests are never dropped: the batch that notices a promotion waits for the
load, and every other batch runs on whichever model is loaded.

No Modal, database or settings here: the active version and the file preparation come in as callables.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

from storage.errors import UserError
from inference.generation import check_options
from inference.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from inference.modal_wire import caption_to_wire, error_to_wire, options_from_wire
from inference.pixels import decode_image
from inference.types import GenerationOptions

log = logging.getLogger(__name__)

Loader = Callable[[str], Any]  # model location -> a captioner with caption(), reload() and model_version


class CaptionServer:
    """Captions batches with the active model version and switches when the registry's active version moves."""

    def __init__(
        self,
        load: Loader,
        active_location: Callable[[], str],
        *,
        prepare: Callable[[str], str] = lambda location: location,
        poll_s: float = 30.0,
        max_image_bytes: int = DEFAULT_MAX_BYTES,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._active_location = active_location
        self._prepare = prepare
        self.poll_s = poll_s
        self.max_image_bytes, self.max_image_pixels = max_image_bytes, max_image_pixels
        self._clock = clock
        self.location = active_location()  # a new container starts on the active version
        self.captioner = load(prepare(self.location))
        self._checked_at = clock()
        log.info("caption server ready", extra={"version": self.model_version, "location": self.location})

    @property
    def model_version(self) -> str:
        """The version now serving."""
        return self.captioner.model_version

    def caption_batch(self, images: Sequence[bytes], options: Sequence[dict | None]) -> list[dict]:
        """One wire result per image, in order: a caption, or the reason the image was refused."""
        if len(images) != len(options):
            raise ValueError(f"{len(images)} images but {len(options)} option sets")
        self.follow_registry()
        results: list[dict | None] = [None] * len(images)
        groups: dict[GenerationOptions, list[tuple[int, Any]]] = {}
        for index, (data, wire_options) in enumerate(zip(images, options)):
            try:
                generation = options_from_wire(wire_options)
                check_options(generation)
                image = decode_image(data, max_bytes=self.max_image_bytes, max_pixels=self.max_image_pixels)
            except UserError as exc:  # costs no GPU time, and the rest of the batch is still captioned
                results[index] = error_to_wire(exc)
                continue
            groups.setdefault(generation, []).append((index, image))
        for generation, items in groups.items():
            captions = self.captioner.caption([image for _, image in items], generation)
            for (index, _), caption in zip(items, captions):
                results[index] = caption_to_wire(caption)
        return results  # type: ignore[return-value]  (every slot is filled above)

    def follow_registry(self, *, force: bool = False) -> bool:
        """Switch to the registry's active version if it moved (checked at most every `poll_s` seconds).

        Returns True when a new version now serves. Any failure (registry unreachable, files not yet
        visible, a model that does not load) is logged and retried at the next check; the loaded model
        keeps serving meanwhile.
        """
        now = self._clock()
        if not force and now - self._checked_at < self.poll_s:
            return False
        self._checked_at = now
        try:
            location = self._active_location()
        except Exception:
            log.exception("registry check failed; the loaded model keeps serving")
            return False
        if location == self.location:
            return False
        return self._switch(location)

    def _switch(self, location: str) -> bool:
        previous = self.model_version
        try:
            version = self.captioner.reload(self._prepare(location))
        except Exception as exc:
            log.error("could not switch to the newly active model; the previous one keeps serving: %s", exc,
                      extra={"location": location, "serving": previous}, exc_info=not isinstance(exc, UserError))
            return False
        self.location = location
        log.info("switched to the registry's active version",
                 extra={"previous_version": previous, "version": version, "location": location})
        return True
