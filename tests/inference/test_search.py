"""The fast path's decode loop and graphs against plain `generate`: same fp32 weights, same tokens.

`inference.search` drives `inference.fast.graph.DecoderStep` here in torch fp32 (the graphs the fast path
exports), so any difference from `generate` is a difference of search or graph, not of int8 rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage
import torch
from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

from inference.fast.graph import DecoderStep, EncoderGraph, empty_past
from inference.generation import search_spec
from inference.images import load_image
from inference.modeldir import set_token_ids
from inference.search import ban_repeated_ngrams, score_sequences, search
from inference.types import GenerationOptions

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
PHOTOS = ["astronaut.png", "rocket.jpg", "chelsea.png", "coffee.png", "camera.png"]


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    loaded = VisionEncoderDecoderModel.from_pretrained(tiny_model_dir).eval()
    set_token_ids(loaded, AutoTokenizer.from_pretrained(tiny_model_dir))
    return loaded


@pytest.fixture(scope="module")
def pixels(tiny_model_dir):
    images = [load_image((SKIMAGE_DATA / name).read_bytes()) for name in PHOTOS]
    return AutoImageProcessor.from_pretrained(tiny_model_dir)(images=images, return_tensors="pt").pixel_values


def torch_stepper(model, pixels, beams):
    """The step function over the fp32 torch graphs (what inference.fast.build exports)."""
    with torch.inference_mode():
        cross = EncoderGraph(model)(pixels)
    decoder = DecoderStep(model)
    state = {"past": empty_past(model.config, len(pixels) * beams)}

    def step(tokens, origin):
        past = state["past"] if origin is None else [t[torch.from_numpy(origin)] for t in state["past"]]
        with torch.inference_mode():
            logprobs, *state["past"] = decoder(torch.from_numpy(tokens), *past, *cross)
        return logprobs.numpy()

    return step


@pytest.mark.parametrize("options", [
    GenerationOptions(num_beams=1, max_new_tokens=12, no_repeat_ngram_size=2),
    GenerationOptions(num_beams=1, max_new_tokens=12, no_repeat_ngram_size=0),
    GenerationOptions(num_beams=3, max_new_tokens=10, no_repeat_ngram_size=3),
    GenerationOptions(num_beams=4, max_new_tokens=8, no_repeat_ngram_size=3, num_alternatives=3),
], ids=["greedy", "greedy-no-ban", "beam3", "beam4-nbest"])
def test_own_loop_picks_the_tokens_generate_picks(model, pixels, options):
    spec = search_spec(options, model.generation_config)
    result = search(torch_stepper(model, pixels, options.num_beams), len(pixels), spec)
    with torch.no_grad():
        expected = model.generate(pixels, num_beams=options.num_beams, max_new_tokens=options.max_new_tokens,
                                  no_repeat_ngram_size=options.no_repeat_ngram_size, do_sample=False,
                                  num_return_sequences=spec.n_best)
    assert result.sequences.tolist() == expected.tolist()


def test_token_logprobs_are_the_models_own(model, pixels):
    """Each recorded log-probability is the teacher-forced one (what the exact path's confidence uses)."""
    options = GenerationOptions(num_beams=3, max_new_tokens=8, no_repeat_ngram_size=2)
    result = search(torch_stepper(model, pixels, 3), len(pixels), search_spec(options, model.generation_config))
    ids = torch.from_numpy(result.sequences)
    with torch.no_grad():
        logits = model(pixel_values=pixels, decoder_input_ids=ids[:, :-1]).logits
    forced = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
    eos = model.generation_config.eos_token_id
    for row, recorded, expected in zip(ids[:, 1:].tolist(), result.token_logprobs, forced.tolist()):
        end = row.index(eos) + 1 if eos in row else len(row)
        assert recorded == pytest.approx(expected[:end], abs=1e-4)


def test_scoring_given_sequences_is_teacher_forcing(model, pixels):
    """`score_sequences` (the fast path's confidence views) gives the model's teacher-forced log-probabilities
    of sequences it did not choose itself, each cut at its first EOS."""
    eos = model.generation_config.eos_token_id
    rng = np.random.default_rng(0)
    rows = rng.integers(0, model.config.decoder.vocab_size, size=(len(pixels), 7))
    rows[rows == eos] = (eos + 1) % model.config.decoder.vocab_size
    rows[:, 0] = model.generation_config.decoder_start_token_id
    rows[0, 3] = eos  # the first row ends early; what follows its EOS is not scored
    scored = score_sequences(torch_stepper(model, pixels, 1), rows, eos)
    ids = torch.from_numpy(rows)
    with torch.no_grad():
        logits = model(pixel_values=pixels, decoder_input_ids=ids[:, :-1]).logits
    forced = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0].tolist()
    assert len(scored[0]) == 3 and [len(r) for r in scored[1:]] == [6] * (len(pixels) - 1)
    for got, expected in zip(scored, forced):
        assert got == pytest.approx(expected[:len(got)], abs=1e-4)


def test_ngram_ban_matches_transformers():
    from transformers.generation.logits_process import NoRepeatNGramLogitsProcessor

    rng = np.random.default_rng(0)
    rows = rng.integers(0, 4, size=(6, 9))  # a 4-token vocabulary: plenty of repeats
    scores = rng.standard_normal((6, 4)).astype(np.float32)
    for size in (1, 2, 3):
        expected = NoRepeatNGramLogitsProcessor(size)(torch.from_numpy(rows), torch.from_numpy(scores.copy()))
        assert np.array_equal(ban_repeated_ngrams(rows, scores, size), expected.numpy())
