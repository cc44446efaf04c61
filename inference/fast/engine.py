"""The CPU fast path: int8 ONNX Runtime graphs driven by capbot's own decode loop.

An `inference.engine.Engine` like the exact engine (`inference.exact`), with different machinery: the
encoder graph computes every layer's cross-attention keys/values once per image, the decoder graph runs
one token per step against a self-attention cache, and `inference.search` makes
`generate`'s choices in NumPy. Captions go through `inference.generation.assemble_captions`, so text,
confidence and alternatives mean what they mean on the exact path. Why ONNX Runtime: see
docs/performance.md. Serving this way never imports torch (`inference.fast.files`, `inference.pixels`);
the conversion runs in a child process that does.
"""

from __future__ import annotations

import ctypes
import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from inference.device import EngineConfigError
from inference.engine import EngineOutput
from inference.families import VISION_ENCODER_DECODER
from inference.fast.cache import ensure_built
from inference.fast.files import generation_settings, load_text_decoder
from inference.fast.layout import DECODER_FILE, ENCODER_FILE, META_FILE, state_names
from inference.generation import assemble_captions, in_batches, search_spec
from inference.modeldir import version_of
from inference.pixels import PixelSpec, pixel_values
from inference.search import score_sequences, search
from inference.types import GenerationOptions
from inference.views import confidence_views, views_for

log = logging.getLogger(__name__)

# Images per encoder run. One: the encoder's int8 activations are quantised per run, so a run of several
# images would make an image's caption depend on the others in its batch (micro-batching must not change
# anyone's caption); and per image, runs of 1 to 4 images cost about the same while 32 took twice as long
# (docs/performance.md). The decoder step runs over the whole batch: more rows share each weight read.
ENCODER_CHUNK = 1


def ort_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session with `threads` intra-op threads that sleep instead of spinning when idle:
    on a busy machine, spinning workers steal the cores the others need (see docs/performance.md). No
    memory arena: a burst's activations go back to the system afterwards, at no measurable cost in speed."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class FastEngine:
    """A converted model (`inference.fast.cache`) with its tokenizer and image processor, on the CPU."""

    family = VISION_ENCODER_DECODER
    device_type = "cpu"

    def __init__(self, folder: Path, image_processor: Any, tokenizer: Any, generation_config: Any, *,
                 version: str, batch_size: int = 8, threads: int = 1) -> None:
        if batch_size < 1:
            raise EngineConfigError(f"batch size must be at least 1, got {batch_size}", reason="bad_batch_size")
        self.folder = folder
        self.meta = json.loads((folder / META_FILE).read_text())
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.generation_config = generation_config
        self.version = version
        self.batch_size = batch_size
        self.threads = threads
        self.encoder = ort_session(folder / ENCODER_FILE, threads)
        self.decoder = ort_session(folder / DECODER_FILE, threads)
        self._past_names, self._cross_names, self._present_names = state_names(self.meta["layers"])
        _return_freed_memory()  # the graph files' parse buffers

    @classmethod
    def load(cls, model_dir: Path, *, version: str | None = None, batch_size: int = 8, threads: int = 1,
             cache_dir: Path | None = None, beside: bool = True, quantize: bool = True) -> "FastEngine":
        """Load the model directory `model_dir` (a local one: `inference.hub.model_directory`), converting it
        first when its conversion is missing or stale; the conversion goes beside the model unless `beside`
        is False (a hub snapshot), else under `cache_dir`. `version`: `inference.modeldir.version_of`."""
        started = time.perf_counter()
        version = version or version_of(model_dir)
        processor = PixelSpec.from_dir(model_dir) or _transformers_processor(model_dir)
        tokenizer = load_text_decoder(model_dir)
        folder = ensure_built(model_dir, fallback=cache_dir, quantize=quantize, beside=beside)
        engine = cls(folder, processor, tokenizer, generation_settings(model_dir, tokenizer),
                     version=version, batch_size=batch_size, threads=threads)
        log.info("fast model loaded", extra={"source": str(model_dir), "version": version, "conversion": str(folder),
                                             "threads": threads, "load_ms": round((time.perf_counter() - started) * 1000)})
        return engine

    def generate(self, images: Sequence[Image.Image], options: GenerationOptions) -> list[EngineOutput]:
        """Caption RGB images in batches of `batch_size`, in order."""
        return in_batches(images, self.batch_size, options, self._generate_batch)

    def pixel_values(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The model's input array for decoded RGB images (the shared image path, `inference.pixels`)."""
        return pixel_values(self.image_processor, images, as_numpy=True)

    def release(self) -> None:
        """Close the graphs' sessions and give their memory back."""
        self.encoder = self.decoder = None
        _return_freed_memory()

    def _generate_batch(self, images: Sequence[Image.Image], options: GenerationOptions) -> list[EngineOutput]:
        if self.encoder is None:
            raise RuntimeError("this engine was released")
        t0 = time.perf_counter()
        pixels = self.pixel_values(images)
        t1 = time.perf_counter()
        spec = search_spec(options, self.generation_config)
        if spec.max_new_tokens + 1 > self.meta["max_positions"]:
            raise EngineConfigError(f"max new tokens must be below {self.meta['max_positions']} for this model",
                                    reason="bad_options")
        cross = self._encode(pixels)
        result = search(self._stepper(cross, len(images) * spec.num_beams), len(images), spec)
        views = views_for(options.confidence_views, self.device_type)
        view_logprobs = self._score_on_views(pixels, result.sequences[::spec.n_best], views, spec.eos_id)
        generated = assemble_captions(self.tokenizer, result.sequences.tolist(), result.token_logprobs, options,
                                      view_logprobs)
        del cross, result
        _return_freed_memory()
        t2 = time.perf_counter()
        n = len(images)
        timings = {"preprocess": (t1 - t0) * 1000 / n, "generate": (t2 - t1) * 1000 / n}
        return [EngineOutput(g.text, g.token_ids, dict(timings), g.confidence, g.alternatives) for g in generated]

    def _score_on_views(self, pixels: np.ndarray, best: np.ndarray, count: int, eos_id: int) -> list[list[float]]:
        """The best captions' token log-probabilities on `count` confidence views (`inference.views`),
        image-major as `assemble_captions` takes them. An image's views share one encoder run and no other
        image's, so its confidence stays its own (on the tiny model 4 views in one run took half the time
        of 4 runs; on the full-size one about the same, within the noise of a busy machine)."""
        if not count:
            return []
        views = np.stack(confidence_views(pixels, count), axis=1).reshape(-1, *pixels.shape[1:])
        cross = self._encode(views, chunk=count)
        rows = np.repeat(best, count, axis=0)
        return score_sequences(self._stepper(cross, len(rows)), rows, eos_id)

    def _encode(self, pixels: np.ndarray, chunk: int = ENCODER_CHUNK) -> list[np.ndarray]:
        """Cross keys/values of every layer, the encoder run over `chunk` images at a time."""
        first = self.encoder.run(self._cross_names, {"pixel_values": pixels[:chunk]})
        if len(pixels) <= chunk:
            return first
        cross = [np.empty((len(pixels), *t.shape[1:]), dtype=t.dtype) for t in first]
        for i in range(0, len(pixels), chunk):
            part = first if i == 0 else self.encoder.run(self._cross_names, {"pixel_values": pixels[i:i + chunk]})
            for whole, piece in zip(cross, part):
                whole[i:i + len(piece)] = piece
        return cross

    def _stepper(self, cross: list[np.ndarray], rows: int):
        """The step function `inference.search` drives: runs the decoder graph and carries its cache."""
        empty = np.zeros((rows, self.meta["heads"], 0, self.meta["head_dim"]), dtype=np.float32)
        feed = {**dict(zip(self._cross_names, cross)), **{name: empty for name in self._past_names}}
        outputs = ["logprobs", *self._present_names]

        def step(tokens: np.ndarray, origin: np.ndarray | None) -> np.ndarray:
            feed["input_ids"] = tokens.astype(np.int64)
            if origin is not None:  # beam search moved sequences: their caches follow
                for name in self._past_names:
                    feed[name] = np.take(feed[name], origin, axis=0)
            logprobs, *present = self.decoder.run(outputs, feed)
            feed.update(zip(self._past_names, present))
            return logprobs

        return step


def _return_freed_memory() -> None:
    """Give the heap's free pages back to the system (glibc's malloc_trim). A batch's caches are tens of
    megabytes; glibc keeps freed blocks of that size for reuse, so without this a server's resident
    memory stays at its largest burst's. Costs well under a millisecond; a no-op off glibc."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _load_libc()


def _transformers_processor(model_dir: Path) -> Any:
    """A processor `PixelSpec` cannot express runs itself (this imports torch)."""
    from inference.ved import load_processor

    return load_processor(model_dir)
