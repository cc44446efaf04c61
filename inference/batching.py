"""Micro-batching: concurrent `caption` calls on one captioner share forward passes.

A burst (many chat uploads at once, web API clients) would otherwise run one forward pass per image. The
`BatchingCaptioner` puts each call on a queue; one worker thread takes the first waiting call, waits up
to `wait_ms` for more (calls that arrive while a batch runs are already waiting, so under load no wait
is added), and captions up to `max_images` images with the same options in one engine call. Each caller
blocks until its own captions are back, so callers still see the plain `Captioner` contract.

Images are decoded in the caller's thread before queuing: a bad image fails only its own call, with the
same `ImageError` as without batching, and decoding runs in parallel with the model.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from PIL import Image

from inference.generation import check_options
from inference.types import Caption, GenerationOptions, ImageInput

log = logging.getLogger(__name__)

_STOP = object()


@dataclass
class _Request:
    images: list[Image.Image]
    options: GenerationOptions
    decode_ms: list[float]
    queued_at: float = field(default_factory=time.perf_counter)
    future: Future = field(default_factory=Future)


class BatchingCaptioner:
    """Wraps a `LocalCaptioner` (anything with `caption`, `decode`, `model_version`) with micro-batching."""

    def __init__(self, inner: Any, *, max_images: int = 8, wait_ms: float = 10.0) -> None:
        if max_images < 1 or wait_ms < 0:
            raise ValueError("max_images must be at least 1 and wait_ms at least 0")
        self.inner = inner
        self.max_images = max_images
        self.wait_s = wait_ms / 1000
        self.default_options = inner.default_options
        self._queue: queue.Queue = queue.Queue()
        self._held: deque[_Request] = deque()  # taken off the queue but left for a later batch (other options)
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="capbot-batcher", daemon=True)
        self._worker.start()

    @property
    def model_version(self) -> str:
        """Version id of the model now serving."""
        return self.inner.model_version

    @property
    def engine(self) -> Any:
        """The engine now serving (benchmarks, evaluation)."""
        return self.inner.engine

    def caption(self, images: Sequence[ImageInput], options: GenerationOptions | None = None) -> list[Caption]:
        """Caption each image, in order, in a batch with whatever other calls are waiting."""
        options = options or self.default_options
        check_options(options)
        if self._closed:
            raise RuntimeError("this captioner was closed")
        decoded, decode_ms = [], []
        for image in images:
            t0 = time.perf_counter()
            decoded.append(self.inner.decode(image))
            decode_ms.append((time.perf_counter() - t0) * 1000)
        if not decoded:
            return []
        request = _Request(decoded, options, decode_ms)
        self._queue.put(request)
        return request.future.result()

    def pixel_values(self, images: Sequence[ImageInput]) -> Any:
        """The tensor the serving model sees for `images`."""
        return self.inner.pixel_values(images)

    def reload(self, model: Any) -> str:
        """Swap the serving model (see `LocalCaptioner.reload`); batches in flight finish on the old one."""
        return self.inner.reload(model)

    def close(self) -> None:
        """Finish the calls already queued, stop the worker, then release the model."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._worker.join(timeout=60)
            while not self._queue.empty():  # a call that raced with close: fail it rather than leave it waiting
                request = self._queue.get_nowait()
                if isinstance(request, _Request):
                    request.future.set_exception(RuntimeError("this captioner was closed"))
        self.inner.close()

    # --- the worker ---

    def _run(self) -> None:
        stopping = False
        while not (stopping and not self._held):
            first = self._held.popleft() if self._held else self._queue.get()
            if first is _STOP:
                stopping = True
                continue
            batch, stopping = self._gather(first, stopping)
            self._caption_batch(batch)

    def _gather(self, first: _Request, stopping: bool) -> tuple[list[_Request], bool]:
        """`first` plus waiting calls with the same options, up to `max_images` images or `wait_s` seconds."""
        batch, count = [first], len(first.images)
        deadline = time.perf_counter() + self.wait_s
        held_before = len(self._held)
        for _ in range(held_before):  # calls held back earlier come first, in order
            request = self._held.popleft()
            if request.options == first.options and count + len(request.images) <= self.max_images:
                batch.append(request)
                count += len(request.images)
            else:
                self._held.append(request)
        while count < self.max_images and not stopping:
            try:
                request = self._queue.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                break
            if request is _STOP:
                stopping = True
            elif request.options == first.options and count + len(request.images) <= self.max_images:
                batch.append(request)
                count += len(request.images)
            else:
                self._held.append(request)
        return batch, stopping

    def _caption_batch(self, batch: list[_Request]) -> None:
        started = time.perf_counter()
        images = [image for request in batch for image in request.images]
        try:
            captions = self.inner.caption(images, batch[0].options)
        except BaseException as exc:  # every caller of the batch learns why
            for request in batch:
                request.future.set_exception(exc)
            return
        log.debug("micro-batch captioned", extra={"calls": len(batch), "images": len(images)})
        offset = 0
        for request in batch:
            mine = captions[offset:offset + len(request.images)]
            offset += len(request.images)
            wait_ms = (started - request.queued_at) * 1000
            request.future.set_result([
                replace(c, timings_ms={**c.timings_ms, "decode": ms, "queue": wait_ms,
                                       "total": c.timings_ms.get("total", 0.0) + ms + wait_ms})
                for c, ms in zip(mine, request.decode_ms)
            ])
