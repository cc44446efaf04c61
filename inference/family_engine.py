"""The exact engine of the BLIP, GIT, Florence-2 and SmolVLM families: plain transformers `generate`.

The captions a user of transformers gets from the model card's code (tests/families.py
`model_card_captions`), on the CPU or a GPU, in the spec's dtype: the family's processor builds the inputs
(`inference.family_models.model_inputs`, with its prompt), `generate` searches, and the caption is decoded
without the prompt, special tokens or chat-template text.

Confidence: each generated token's log-probability is read from the logits `generate` computed for it
(`output_logits`: the model's own distribution, before search penalties such as the n-gram ban), the same
numbers a teacher-forced pass gives, up to the end token; `inference.confidence.caption_confidence` turns
them into one number. With confidence views (`inference.views`: the model's pixel input moved by two
pixels), the best caption is also scored teacher-forced on each view, in one forward pass of the family's
model (`teacher_forced_logprobs`), as the ViT+GPT-2 engine does.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from inference import family_models
from inference.confidence import caption_confidence
from inference.device import EngineConfigError, resolve_placement, resolve_threads
from inference.engine import EngineOutput
from inference.generation import generate_kwargs, n_best_size, pick_alternatives
from inference.modeldir import version_of
from inference.families import BLIP, FLORENCE2, GIT, SMOLVLM
from inference.torch_engine import TorchEngine
from inference.types import GenerationOptions
from inference.views import confidence_views, views_for

log = logging.getLogger(__name__)


class FamilyEngine(TorchEngine):
    """A loaded model of one family and its processor on one device (an `inference.engine.Engine`)."""

    def __init__(self, model: Any, processor: Any, family: str, *, version: str, batch_size: int = 8,
                 prompt: str | None = None) -> None:
        super().__init__(model, version=version, batch_size=batch_size)
        self.family = family
        self.processor = processor
        self.prompt = family_models.caption_prompt(family, processor, prompt)  # refused here when it does not fit
        self.end_ids = family_models.end_token_ids(family, model)

    @classmethod
    def load(cls, model_dir: Path, family: str, *, version: str | None = None, device: str = "auto",
             dtype: str = "auto", batch_size: int = 8, threads: int = 0, prompt: str | None = None,
             fast: bool = False, cache_dir: Path | None = None, beside: bool = True) -> "FamilyEngine":
        """Load the `family` model in the local directory `model_dir` onto `device`; `version` defaults to
        `inference.modeldir.version_of` the directory, `prompt` to the family's (`family_models.caption_prompt`).

        `fast`: the CPU fast path (`inference.fast.families.quantize_for_cpu`: int8 vision tower in ONNX
        Runtime, cached in the model directory, or `cache_dir` where it is read-only or not `beside`; fp16
        Linear weights elsewhere) from fp32 CPU weights, with `threads` (0: `resolve_threads`' default) for both
        torch and ONNX Runtime."""
        version = version or version_of(model_dir)
        placement = resolve_placement("cpu" if fast else device, "float32" if fast else dtype, purpose="serve")
        if (threads or fast) and placement.device.type == "cpu":
            torch.set_num_threads(resolve_threads(threads))
        started = time.perf_counter()
        model = family_models.load_model(model_dir, family, dtype=placement.weights)
        if fast:
            from inference.fast.families import quantize_for_cpu

            model = quantize_for_cpu(model, family, model_dir=model_dir, cache_dir=cache_dir,
                                     threads=resolve_threads(threads), beside=beside)
        engine = cls(model.to(placement.device), family_models.load_processor(model_dir, family), family,
                     version=version, batch_size=batch_size, prompt=prompt)
        log.info("model loaded", extra={"source": str(model_dir), "version": version, "family": family,
                                        "device": str(placement.device), "dtype": str(placement.weights),
                                        "mode": "fast" if fast else "exact",
                                        "load_ms": round((time.perf_counter() - started) * 1000)})
        return engine

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The family processor's pixel tensor for `images`, on the model's device and dtype."""
        return self.inputs(images)["pixel_values"]

    def inputs(self, images: Sequence[Image.Image]) -> dict[str, Any]:
        """Every input the model takes for `images` (pixels, and the prompt's tokens where the family has one),
        on the model's device; floating tensors in the model's dtype."""
        inputs = family_models.model_inputs(self.family, self.processor, images, self.prompt)
        return {name: value.to(self.device, self.dtype) if value.is_floating_point() else value.to(self.device)
                for name, value in inputs.items()}

    def _generate_batch(self, images: Sequence[Image.Image], options: GenerationOptions) -> list[EngineOutput]:
        t0 = time.perf_counter()
        inputs = self.inputs(images)
        t1 = time.perf_counter()
        n_best = n_best_size(options)
        with torch.inference_mode():
            out = self.model.generate(**inputs, num_return_sequences=n_best, output_logits=True,
                                      return_dict_in_generate=True, **generate_kwargs(options))
            rows = out.sequences[:, family_models.prompt_length(self.family, inputs):]
            logprobs = token_logprobs(out, self.end_ids)
            views = views_for(options.confidence_views, self.device_type)
            on_views = self._view_logprobs(inputs, rows[::n_best], views) if views else []
        texts = family_models.caption_texts(self.family, self.processor, rows)
        t2 = time.perf_counter()
        timings = {"preprocess": (t1 - t0) * 1000 / len(images), "generate": (t2 - t1) * 1000 / len(images)}
        rows = rows.tolist()
        return [EngineOutput(texts[first], rows[first], dict(timings),
                             caption_confidence(logprobs[first], on_views[image * views:(image + 1) * views]),
                             pick_alternatives(texts[first], texts[first + 1:first + n_best], options.num_alternatives))
                for image, first in enumerate(range(0, len(rows), n_best))]

    def _view_logprobs(self, inputs: dict[str, Any], best: torch.Tensor, count: int) -> list[list[float]]:
        """The best rows' token log-probabilities on `count` views of their images, image-major (the first
        image's views, then the second's, ...), in one teacher-forced pass."""
        on_views = {name: value.repeat_interleave(count, dim=0) for name, value in inputs.items()}
        pixels = inputs["pixel_values"]
        on_views["pixel_values"] = torch.stack(confidence_views(pixels, count), dim=1).flatten(0, 1)
        return teacher_forced_logprobs(self.family, self.model, on_views, best.repeat_interleave(count, dim=0),
                                       self.end_ids)


def teacher_forced_logprobs(family: str, model: Any, inputs: dict[str, Any], rows: torch.Tensor,
                            end_ids: set[int]) -> list[list[float]]:
    """Each row's tokens' log-probabilities given the model `inputs` (one row per input), in one forward pass,
    up to and with the first end token. `rows` are generated rows with the prompt cut off: BLIP, GIT and
    Florence-2 rows start with the decoder's start token, SmolVLM's continue its prompt. Every decoder here
    is causal, so the padding after a row's end token changes none of the log-probabilities kept."""
    if family == SMOLVLM:
        targets = rows
        mask = torch.cat([inputs["attention_mask"], torch.ones_like(rows[:, :-1])], dim=1)
        logits = model(input_ids=torch.cat([inputs["input_ids"], rows[:, :-1]], dim=1), attention_mask=mask,
                       position_ids=(mask.cumsum(-1) - 1).clamp(min=0),  # as generate numbers left-padded rows
                       pixel_values=inputs["pixel_values"], pixel_attention_mask=inputs["pixel_attention_mask"]).logits
    else:
        targets = rows[:, 1:]
        if family == FLORENCE2:
            logits = model(**inputs, decoder_input_ids=rows[:, :-1]).logits
        elif family in (BLIP, GIT):  # GIT's logits hold its image tokens' first: the text's are the last
            logits = model(pixel_values=inputs["pixel_values"], input_ids=rows[:, :-1]).logits
        else:
            raise EngineConfigError(f"no teacher-forced scoring for the {family} family", reason="bad_options")
    logits = logits[:, logits.shape[1] - targets.shape[1]:]
    chosen = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None])[..., 0]
    return [_until_end(row_tokens, row_logprobs, end_ids)
            for row_tokens, row_logprobs in zip(targets.tolist(), chosen.tolist())]


def _until_end(tokens: list[int], logprobs: list[float], end_ids: set[int]) -> list[float]:
    end = next((i + 1 for i, token in enumerate(tokens) if token in end_ids), len(tokens))
    return logprobs[:end]


def token_logprobs(out: Any, end_ids: set[int]) -> list[list[float]]:
    """Each returned row's generated tokens' log-probabilities under the model, from the raw logits `generate`
    kept per step (`output_logits`; a beam row follows its `beam_indices`), up to and with its first end token."""
    steps = out.beam_indices.shape[1] if getattr(out, "beam_indices", None) is not None else len(out.logits)
    tokens = out.sequences[:, out.sequences.shape[1] - steps:]
    rows = torch.arange(len(tokens), device=tokens.device)
    chosen = []
    for step in range(steps):
        beams = out.beam_indices[:, step].clamp(min=0) if getattr(out, "beam_indices", None) is not None else rows
        logprobs = torch.log_softmax(out.logits[step].float(), dim=-1)
        chosen.append(logprobs[beams, tokens[:, step]])
    per_row = torch.stack(chosen, dim=1).tolist() if chosen else [[] for _ in rows]
    return [_until_end(row_tokens, row_logprobs, end_ids) for row_tokens, row_logprobs in zip(tokens.tolist(), per_row)]
