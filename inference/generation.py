"""Pixels to caption text: the one place that builds `generate`'s arguments and cleans what it returns.

The engine (serving, `capbot caption`, evaluation through a captioner) and training's sample predictions
both call `generate_captions`, so a caption scored during training is produced exactly as a served one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from inference.confidence import caption_confidence
from inference.device import EngineConfigError
from inference.search import SearchSpec
from inference.types import GenerationOptions
from inference.views import MAX_VIEWS, confidence_views, views_for


@dataclass(frozen=True)
class GeneratedCaption:
    """One generated caption: clean text, raw token ids, their log-probabilities, confidence, alternatives."""

    text: str
    token_ids: list[int]  # as generate returned them: decoder start first, right-padded to the batch's longest
    token_logprobs: list[float] = field(default_factory=list)  # of each generated token up to and with EOS
    confidence: float = 0.0  # `inference.confidence.caption_confidence` over the image and its views
    alternatives: tuple[str, ...] = ()


def generate_captions(model: Any, tokenizer: Any, pixel_values: Any,
                      options: GenerationOptions) -> list[GeneratedCaption]:
    """Caption a batch of preprocessed images with `model.generate` (no gradients, deterministic).

    The encoder runs once: `generate` and the scoring pass that gives each token's log-probability share
    its output. With `num_alternatives`, the beam search returns its n-best and the others become
    alternatives (see `pick_alternatives`). With `confidence_views`, the encoder also runs on that many
    views of the images (`inference.views`, one batch) and the best caption is scored on them too.
    """
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    check_options(options)
    n_best = n_best_size(options)
    with torch.inference_mode():
        hidden = model.encoder(pixel_values=pixel_values).last_hidden_state
        # A fresh output object: generate expands the one it is given in place, once per beam. The decoder's
        # mask starts as its start token's (generate extends it per step): GPT-2's start token is also its
        # padding, and without a mask the decoder cannot tell that start from padding.
        ids = model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=hidden), num_return_sequences=n_best,
                             decoder_attention_mask=torch.ones((len(hidden), 1), dtype=torch.long,
                                                               device=hidden.device),
                             **generate_kwargs(options))
        logprobs = _token_logprobs(model, hidden, ids, n_best, tokenizer.eos_token_id)
        view_logprobs = _view_logprobs(model, pixel_values, ids[::n_best],
                                       views_for(options.confidence_views, pixel_values.device.type),
                                       tokenizer.eos_token_id)
    return assemble_captions(tokenizer, ids.tolist(), logprobs, options, view_logprobs)


def assemble_captions(tokenizer: Any, rows: list[list[int]], token_logprobs: list[list[float]],
                      options: GenerationOptions, view_logprobs: Sequence[list[float]] = ()) -> list[GeneratedCaption]:
    """Captions from a search's output, `n_best_size(options)` rows per image (best first): clean text,
    confidence from the best row's token log-probabilities, alternatives from the other rows.
    `view_logprobs` are the best rows' token log-probabilities on the confidence views, image-major (the
    first image's views, then the second's, ...). Every engine path (plain `generate`, the fast path's
    own loop) ends here."""
    n_best = n_best_size(options)
    views = len(view_logprobs) // max(len(rows) // n_best, 1)
    texts = [clean_caption(t) for t in tokenizer.batch_decode(rows, skip_special_tokens=True)]
    captions = []
    for image, first in enumerate(range(0, len(rows), n_best)):
        best_logprobs = token_logprobs[first]
        on_views = view_logprobs[image * views:(image + 1) * views]
        captions.append(GeneratedCaption(
            texts[first], rows[first], best_logprobs, caption_confidence(best_logprobs, on_views),
            pick_alternatives(texts[first], texts[first + 1:first + n_best], options.num_alternatives),
        ))
    return captions


def n_best_size(options: GenerationOptions) -> int:
    """How many sequences per image the search returns: the beams when alternatives are wanted, else one."""
    return options.num_beams if options.num_alternatives > 0 else 1


def pick_alternatives(best: str, others: Sequence[str], limit: int) -> tuple[str, ...]:
    """Up to `limit` of `others` (n-best order) that differ from `best` and each other once cleaned up,
    and are not empty: beams often differ only in spacing or a trailing token that decodes to nothing."""
    chosen: list[str] = []
    for text in others:
        if len(chosen) == limit:
            break
        if text and text != best and text not in chosen:
            chosen.append(text)
    return tuple(chosen)


def _token_logprobs(model: Any, hidden: Any, ids: Any, n_best: int, eos_id: int) -> list[list[float]]:
    """Each row's generated tokens' log-probabilities under the model (teacher-forced, no search penalties),
    up to and including the first EOS; padding after it is left out."""
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    encoded = BaseModelOutput(last_hidden_state=hidden.repeat_interleave(n_best, dim=0))
    inputs = ids[:, :-1]
    logits = model(encoder_outputs=encoded, decoder_input_ids=inputs,
                   decoder_attention_mask=_until_eos(inputs, eos_id)).logits
    chosen = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
    rows = []
    for row_ids, row_logprobs in zip(ids[:, 1:].tolist(), chosen.tolist()):
        end = row_ids.index(eos_id) + 1 if eos_id in row_ids else len(row_ids)
        rows.append(row_logprobs[:end])
    return rows


def _until_eos(inputs: Any, eos_id: int) -> Any:
    """The decoder inputs' attention mask: the start token and every token up to and with the first EOS after
    it; what follows is padding (which, in GPT-2's vocabulary, is the same token as the start)."""
    import torch

    ended = torch.cumsum((inputs[:, 1:] == eos_id).long(), dim=1) > 0
    after_eos = torch.cat([torch.zeros_like(ended[:, :1]), ended[:, :-1]], dim=1)  # the EOS itself stays
    return torch.cat([torch.ones_like(inputs[:, :1]), (~after_eos).long()], dim=1)


def _view_logprobs(model: Any, pixel_values: Any, best: Any, count: int, eos_id: int) -> list[list[float]]:
    """The best rows' token log-probabilities on `count` confidence views of their images (`inference.views`),
    image-major: every view in one encoder batch, then one teacher-forced pass."""
    if not count:
        return []
    import torch

    views = torch.stack(confidence_views(pixel_values, count), dim=1).flatten(0, 1)  # image-major
    hidden = model.encoder(pixel_values=views).last_hidden_state
    return _token_logprobs(model, hidden, best.repeat_interleave(count, dim=0), 1, eos_id)


def in_batches(images: Sequence[Any], batch_size: int, options: GenerationOptions,
               one_batch: Callable[[Sequence[Any], GenerationOptions], list[Any]]) -> list[Any]:
    """`one_batch` over `images` in slices of `batch_size`, outputs in order; options checked first, so a bad
    option fails before any work (each engine's `generate`)."""
    check_options(options)
    outputs: list[Any] = []
    for start in range(0, len(images), batch_size):
        outputs.extend(one_batch(images[start:start + batch_size], options))
    return outputs


def generate_kwargs(options: GenerationOptions) -> dict[str, Any]:
    """The `generate` arguments for `options`; deterministic (no sampling) whatever the checkpoint's config says."""
    return {
        "num_beams": options.num_beams,
        "max_new_tokens": options.max_new_tokens,
        "no_repeat_ngram_size": options.no_repeat_ngram_size,
        "do_sample": False,
        "use_cache": True,  # a model saved mid-training may carry use_cache=False (gradient checkpointing)
    }


def search_spec(options: GenerationOptions, generation_config: Any) -> SearchSpec:
    """The fast path's own decode loop's arguments for `options`: what `generate_kwargs` asks of `generate`,
    with the special tokens, length penalty and early stopping `generate` reads from the model's
    generation config (`inference.modeldir.set_token_ids` fills the tokens)."""
    check_options(options)
    eos = generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    pad = generation_config.pad_token_id if generation_config.pad_token_id is not None else eos
    return SearchSpec(
        start_id=generation_config.decoder_start_token_id, eos_id=eos, pad_id=pad,
        max_new_tokens=options.max_new_tokens, num_beams=options.num_beams,
        no_repeat_ngram_size=options.no_repeat_ngram_size, n_best=n_best_size(options),
        length_penalty=_or_default(generation_config.length_penalty, 1.0),
        early_stopping=_or_default(generation_config.early_stopping, False),
    )


def _or_default(value: Any, default: Any) -> Any:
    # transformers 5 leaves unset generation parameters None and applies its defaults inside generate.
    return default if value is None else value


def clean_caption(text: str) -> str:
    """A caption as one line: runs of whitespace (newlines, tabs, CRs an untrained model may emit) become one space."""
    return " ".join(text.split())


def check_options(options: GenerationOptions) -> None:
    """Reject options `generate` would fail on, with a message naming the option."""
    if options.num_beams < 1:
        raise EngineConfigError(f"beams must be at least 1, got {options.num_beams}", reason="bad_options")
    if options.max_new_tokens < 1:
        raise EngineConfigError(f"max new tokens must be at least 1, got {options.max_new_tokens}", reason="bad_options")
    if options.num_alternatives < 0:
        raise EngineConfigError(f"alternatives must be 0 or more, got {options.num_alternatives}", reason="bad_options")
    if options.num_alternatives > options.num_beams - 1:
        raise EngineConfigError(
            f"{options.num_alternatives} alternative(s) need a beam search with more beams: at least "
            f"{options.num_alternatives + 1} beams, got {options.num_beams}", reason="bad_options")
    if options.confidence_views is not None and not 0 <= options.confidence_views <= MAX_VIEWS:
        raise EngineConfigError(f"confidence views must be 0 to {MAX_VIEWS}, got {options.confidence_views}",
                                reason="bad_options")
    if options.no_repeat_ngram_size < 0:
        raise EngineConfigError(f"no-repeat n-gram size must be 0 (off) or more, got {options.no_repeat_ngram_size}", reason="bad_options")
