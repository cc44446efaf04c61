"""The engine against plain `VisionEncoderDecoderModel.generate`: same weights, same inputs, same tokens."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
import skimage
import torch
from PIL import Image
from transformers import AutoImageProcessor, VisionEncoderDecoderModel

from inference.device import EngineConfigError, resolve_device, resolve_precision
from inference.captioner import load_engine
from inference.exact import ExactEngine
from inference.hub import ModelLoadError
from inference.images import load_image
from inference.types import GenerationOptions
from tests.specs import EXACT_GREEDY

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
PHOTOS = ["astronaut.png", "rocket.jpg", "chelsea.png", "coffee.png", "camera.png"]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return ExactEngine.load(tiny_model_dir, device="cpu", batch_size=3)


@pytest.fixture(scope="module")
def photos():
    return [load_image((SKIMAGE_DATA / name).read_bytes()) for name in PHOTOS]


def reference(model_dir, images, **kwargs) -> list[list[int]]:
    model = VisionEncoderDecoderModel.from_pretrained(model_dir).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir)
    pixels = processor(images=images, return_tensors="pt").pixel_values
    with torch.no_grad():
        return model.generate(pixels, **kwargs).tolist()


@pytest.mark.parametrize("num_beams", [1, 3])
def test_output_equals_plain_generate_token_for_token(engine, photos, tiny_model_dir, num_beams):
    options = GenerationOptions(num_beams=num_beams, max_new_tokens=10, no_repeat_ngram_size=3)
    outputs = engine.generate(photos, options)
    expected = []
    for start in (0, 3):  # the engine batches by 3
        expected += reference(tiny_model_dir, photos[start:start + 3], num_beams=num_beams, max_new_tokens=10, no_repeat_ngram_size=3)
    assert [o.token_ids for o in outputs] == expected
    texts = engine.tokenizer.batch_decode(expected, skip_special_tokens=True)
    assert [o.text for o in outputs] == [" ".join(t.split()) for t in texts]
    assert all(o.token_ids[0] == engine.tokenizer.bos_token_id for o in outputs)  # decoding starts from bos


def test_no_repeat_ngram_size_forbids_repeats(engine, photos):
    for out in engine.generate(photos, GenerationOptions(max_new_tokens=24, no_repeat_ngram_size=2)):
        pairs = list(zip(out.token_ids[1:], out.token_ids[2:]))
        pairs = [p for p in pairs if engine.tokenizer.pad_token_id not in p]
        assert len(pairs) == len(set(pairs))


def test_max_new_tokens_bounds_length_and_batches_keep_order(engine, photos):
    outs = engine.generate(photos, GenerationOptions(max_new_tokens=4))
    assert all(len(o.token_ids) <= 5 for o in outs)
    singles = [engine.generate([p], GenerationOptions(max_new_tokens=4))[0].text for p in photos]
    assert [o.text for o in outs] == singles
    assert all(o.timings_ms["generate"] > 0 and o.timings_ms["preprocess"] > 0 for o in outs)
    assert engine.generate([], GenerationOptions()) == []


def test_bad_options_and_devices_are_user_errors(engine):
    with pytest.raises(EngineConfigError, match="beams"):
        engine.generate([Image.new("RGB", (8, 8))], GenerationOptions(num_beams=0))
    if not torch.cuda.is_available():
        with pytest.raises(EngineConfigError, match="no CUDA GPU"):
            resolve_device("cuda")
        assert resolve_device("auto").type == "cpu"
    assert resolve_precision("auto", torch.device("cpu")) == torch.float32
    with pytest.raises(EngineConfigError, match="unknown precision"):
        resolve_precision("int3", torch.device("cpu"))


def test_bfloat16_weights_load_and_caption(tiny_model_dir, photos):
    bf16 = ExactEngine.load(tiny_model_dir, device="cpu", dtype="bfloat16")
    assert bf16.dtype == torch.bfloat16
    assert len(bf16.generate(photos[:2], GenerationOptions(max_new_tokens=3))) == 2


def test_unreachable_hub_id_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        load_engine("nlpconnect/vit-gpt2-image-captioning", EXACT_GREEDY)
    assert err.value.reason == "hub_unreachable" and "local model directory" in err.value.message


def test_missing_or_incomplete_directories_are_clear_errors(tmp_path):
    with pytest.raises(ModelLoadError) as err:
        load_engine(tmp_path / "nope", EXACT_GREEDY)
    assert err.value.reason == "not_found" and "directory not found" in err.value.message
    with pytest.raises(ModelLoadError) as err:
        load_engine(tmp_path, EXACT_GREEDY)
    assert err.value.reason == "invalid" and "capbot models init" in err.value.message


def test_alternatives_are_the_other_distinct_beams_and_the_best_is_unchanged(engine, photos, tiny_model_dir):
    options = GenerationOptions(num_beams=4, max_new_tokens=8, no_repeat_ngram_size=3, num_alternatives=3)
    outputs = engine.generate(photos[:3], options)
    expected = reference(tiny_model_dir, photos[:3], num_beams=4, max_new_tokens=8, no_repeat_ngram_size=3)
    assert [o.token_ids for o in outputs] == expected  # asking for alternatives does not change the caption
    n_best = reference(tiny_model_dir, photos[:3], num_beams=4, max_new_tokens=8, no_repeat_ngram_size=3,
                       num_return_sequences=4)
    texts = [" ".join(t.split()) for t in engine.tokenizer.batch_decode(n_best, skip_special_tokens=True)]
    for i, out in enumerate(outputs):
        others = [t for t in texts[4 * i + 1:4 * i + 4] if t and t != out.text]
        assert list(out.alternatives) == list(dict.fromkeys(others))[:3]
        assert out.text not in out.alternatives and len(set(out.alternatives)) == len(out.alternatives)


def test_confidence_is_the_geometric_mean_of_the_token_probabilities(engine, photos, tiny_model_dir):
    out = engine.generate(photos[:1], GenerationOptions(max_new_tokens=6))[0]
    model = VisionEncoderDecoderModel.from_pretrained(tiny_model_dir).eval()
    ids = torch.tensor([out.token_ids])
    with torch.no_grad():
        logits = model(pixel_values=engine.pixel_values(photos[:1]), decoder_input_ids=ids[:, :-1]).logits
    logprobs = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[0, :, 0].tolist()
    eos = engine.tokenizer.eos_token_id
    end = out.token_ids[1:].index(eos) + 1 if eos in out.token_ids[1:] else len(logprobs)
    expected = math.exp(sum(logprobs[:end]) / end)
    assert 0.0 <= out.confidence <= 1.0
    assert out.confidence == pytest.approx(expected, rel=1e-5)


def test_alternatives_without_enough_beams_are_a_user_error(engine, photos):
    with pytest.raises(EngineConfigError, match="more beams"):
        engine.generate(photos[:1], GenerationOptions(num_beams=1, num_alternatives=1))
    with pytest.raises(EngineConfigError, match="more beams"):
        engine.generate(photos[:1], GenerationOptions(num_beams=3, num_alternatives=3))


def test_confidence_views_out_of_range_are_a_user_error(engine, photos):
    for views in (-1, 5):
        with pytest.raises(EngineConfigError, match="confidence views must be 0 to 4") as raised:
            engine.generate(photos[:1], GenerationOptions(confidence_views=views))
        assert raised.value.reason == "bad_options"


def test_the_scoring_pass_masks_what_follows_each_captions_end():
    from inference.generation import _until_eos

    start = eos = 9  # GPT-2: one token starts, ends and pads
    inputs = torch.tensor([[start, 4, eos, eos, eos], [start, 4, 5, 6, 7], [start, eos, eos, eos, eos]])
    assert _until_eos(inputs, eos).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert _until_eos(inputs[:, :1], eos).tolist() == [[1], [1], [1]]
