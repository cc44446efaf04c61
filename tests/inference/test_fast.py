"""The CPU fast path end to end: conversion cache, the ONNX graphs, and captions with confidence and alternatives.

Fidelity of int8 on a trained model is checked in test_fast_fidelity.py (slow); speed is measured by
`make bench`, not here.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper
import skimage
import torch
from transformers import VisionEncoderDecoderModel

from inference.captioner import LocalCaptioner
from inference.device import EngineConfigError, resolve_mode, resolve_threads
import inference.fast.cache
from inference.fast.build import build as build_conversion
from inference.fast.cache import CACHE_DIRNAME, conversion_recipe, weights_key
from inference.fast.layout import META_FILE
from inference.fast.engine import FastEngine
from inference.types import GenerationOptions
from tests.specs import exact_greedy, fast_greedy

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
PHOTOS = ["astronaut.png", "rocket.jpg", "chelsea.png", "coffee.png", "camera.png"]


@pytest.fixture(scope="module")
def photos():
    return [(SKIMAGE_DATA / name).read_bytes() for name in PHOTOS]


@pytest.fixture(scope="module")
def model_copy(tiny_model_dir, tmp_path_factory):
    """A private copy of the tiny model: the fast path writes its conversion beside the weights."""
    copy = Path(shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("fast") / "model"))
    shutil.rmtree(copy / CACHE_DIRNAME, ignore_errors=True)  # another test may have served the original fast
    return copy


@pytest.fixture(scope="module")
def exact(tiny_model_dir):
    return LocalCaptioner(tiny_model_dir, exact_greedy(batch_size=3))


@pytest.fixture(scope="module")
def fast(model_copy):
    return LocalCaptioner(model_copy, fast_greedy(batch_size=3))


def conversions(model_dir: Path) -> list[str]:
    root = model_dir / CACHE_DIRNAME
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def test_conversion_is_cached_beside_the_model_keyed_by_its_weights(fast, model_copy):
    assert conversions(model_copy) == [weights_key(model_copy)]
    folder = fast.engine.folder
    built_at = (folder / META_FILE).stat().st_mtime_ns
    again = LocalCaptioner(model_copy, fast_greedy())
    assert again.engine.folder == folder and (folder / META_FILE).stat().st_mtime_ns == built_at  # reused


def test_new_weights_rebuild_and_the_stale_conversion_goes(fast, model_copy, photos, tmp_path):
    changed = Path(shutil.copytree(model_copy, tmp_path / "changed"))
    model = VisionEncoderDecoderModel.from_pretrained(changed)
    with torch.no_grad():
        model.decoder.lm_head.weight.mul_(1.5)  # tied to the token embeddings: every step changes
    model.save_pretrained(changed)
    old_key = weights_key(model_copy)
    assert conversions(changed) == [old_key]  # copied along with the model, now stale
    rebuilt = LocalCaptioner(changed, fast_greedy())
    assert conversions(changed) == [weights_key(changed)] != [old_key]
    assert rebuilt.engine.folder.parent == changed / CACHE_DIRNAME
    assert rebuilt.caption(photos[:1])[0].confidence != fast.caption(photos[:1])[0].confidence


def test_each_kind_of_cpu_keeps_its_own_conversion_of_the_same_weights(model_copy, photos, tmp_path, monkeypatch):
    model = Path(shutil.copytree(model_copy, tmp_path / "model"))
    for saturates in (True, False):  # the same folder served by an AVX2-only CPU, then by a VNNI one
        monkeypatch.setattr(inference.fast.cache, "int8_products_saturate", lambda: saturates)
        captioner = LocalCaptioner(model, fast_greedy())
        assert captioner.caption(photos[:1])[0].text
        meta = json.loads((captioner.engine.folder / META_FILE).read_text())
        assert meta["reduce_range"] is saturates
        assert meta["recipe"] == conversion_recipe(reduce_range=saturates)
    seven, eight = (weights_key(model, conversion_recipe(reduce_range=r)) for r in (True, False))
    assert seven != eight and conversions(model) == sorted([seven, eight])  # neither removed the other's


def test_7_bit_weights_keep_int8_products_within_int16(tiny_model_dir, tmp_path):
    peaks = {}
    for reduce_range in (False, True):
        out = tmp_path / str(reduce_range)
        build_conversion(tiny_model_dir, out, reduce_range=reduce_range)
        graph = onnx.load(str(out / "encoder.onnx"))
        quantized = [numpy_helper.to_array(t) for t in graph.graph.initializer if t.data_type == onnx.TensorProto.INT8]
        assert quantized
        peaks[reduce_range] = max(int(abs(w.astype(int)).max()) for w in quantized)
    assert peaks[False] == 127 and peaks[True] <= 64  # 255 x 64 x 2 < 32767: AVX2's int16 pair sums cannot clip


def test_fp32_graphs_in_a_fallback_cache_give_the_exact_tokens(exact, tiny_model_dir, photos, tmp_path):
    """A model directory that cannot take the conversion (here a file blocks the cache folder) uses the
    fallback cache; and the exported graphs, unquantised, reproduce plain generate's tokens and the exact
    path's confidences."""
    blocked = Path(shutil.copytree(tiny_model_dir, tmp_path / "blocked"))
    shutil.rmtree(blocked / CACHE_DIRNAME, ignore_errors=True)  # another test may have served it fast
    (blocked / CACHE_DIRNAME).write_text("not a folder")
    engine = FastEngine.load(blocked, batch_size=3, threads=1, cache_dir=tmp_path / "fallback", quantize=False)
    assert engine.folder.parent == tmp_path / "fallback" / "blocked"
    images = [exact.decode(p) for p in photos]
    for options in (GenerationOptions(max_new_tokens=10), GenerationOptions(num_beams=3, max_new_tokens=10)):
        assert [o.token_ids for o in engine.generate(images, options)] == \
               [o.token_ids for o in exact.engine.generate(images, options)]
    # and the same confidences, views included (each image's own views, in the same order)
    options = GenerationOptions(num_beams=3, max_new_tokens=10, num_alternatives=2, confidence_views=4)
    assert [o.confidence for o in engine.generate(images, options)] == \
           pytest.approx([o.confidence for o in exact.engine.generate(images, options)], rel=1e-4)


def shifted_by_padding(pixels: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """The picture moved dx right and dy down with its edges repeated (torch's own replicate padding)."""
    pad = max(abs(dx), abs(dy))
    padded = torch.nn.functional.pad(pixels, (pad, pad, pad, pad), mode="replicate")
    height, width = pixels.shape[-2:]
    return padded[..., pad - dy:pad - dy + height, pad - dx:pad - dx + width]


@pytest.mark.parametrize("precision", ["exact", "fast"])
def test_confidence_and_alternatives_on_both_paths(request, precision, photos, tiny_model_dir):
    """Same definitions on every path: confidence = exp(mean over the caption's tokens, EOS included, of
    log(max(mean - std, min) over the image and its views of the token's probability under the model)); the
    views are the model input moved two pixels right, down, left, up. Alternatives = the other distinct
    beams, best first."""
    captioner = request.getfixturevalue(precision)
    options = GenerationOptions(num_beams=4, max_new_tokens=8, no_repeat_ngram_size=2, num_alternatives=3,
                                confidence_views=4)
    model = VisionEncoderDecoderModel.from_pretrained(tiny_model_dir).eval()
    eos = captioner.engine.tokenizer.eos_token_id
    for photo in photos[:3]:
        caption = captioner.caption([photo], options)[0]
        out = captioner.engine.generate([captioner.decode(photo)], options)[0]
        assert caption.text == out.text and caption.alternatives == out.alternatives
        assert 0 < len(caption.alternatives) <= 3 and caption.text not in caption.alternatives
        assert len(set(caption.alternatives)) == len(caption.alternatives)
        pixels = torch.as_tensor(captioner.pixel_values([photo]))
        views = torch.cat([pixels] + [shifted_by_padding(pixels, dx, dy) for dx, dy in ((2, 0), (0, 2), (-2, 0), (0, -2))])
        ids = torch.tensor([out.token_ids] * len(views))
        with torch.no_grad():
            logits = model(pixel_values=views, decoder_input_ids=ids[:, :-1]).logits
        probs = torch.softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]  # (views, tokens)
        end = out.token_ids[1:].index(eos) + 1 if eos in out.token_ids[1:] else probs.shape[1]
        kept = probs[:, :end].double()
        cautious = torch.maximum(kept.mean(0) - kept.std(0, unbiased=False), kept.min(0).values)
        expected = math.exp(cautious.log().mean().item())
        plain = math.exp(probs[0, :end].log().mean().item())
        # fp32 on the exact path; int8 weights move the fast path's probabilities a little
        assert caption.confidence == pytest.approx(expected, rel=1e-5 if precision == "exact" else 0.1)
        without_views = captioner.caption([photo], replace(options, confidence_views=0))[0]
        assert without_views.text == caption.text and without_views.alternatives == caption.alternatives
        assert without_views.confidence == pytest.approx(plain, rel=1e-5 if precision == "exact" else 0.1)
        # unset, the CPU scores the image only (`inference.views.views_for`)
        unset = captioner.caption([photo], replace(options, confidence_views=None))[0]
        assert (unset.text, unset.confidence) == (without_views.text, without_views.confidence)


def test_modes_and_threads_resolve_with_clear_errors():
    assert resolve_mode("auto", "cpu") == "fast" and resolve_mode("exact", "cpu") == "exact"
    with pytest.raises(EngineConfigError, match="auto, exact or fast"):
        resolve_mode("turbo", "cpu")
    assert 1 <= resolve_threads(0) <= 4 and resolve_threads(3) == 3
    with pytest.raises(EngineConfigError, match="threads"):
        resolve_threads(-1)


def test_a_server_process_serves_fast_without_torch_and_converts_in_a_child(tiny_model_dir, tmp_path, photos):
    """What `capbot run` does on a CPU: torch (a third of a fast server's memory) is never imported; the
    conversion, which needs it, runs in a child process."""
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    shutil.rmtree(model / CACHE_DIRNAME, ignore_errors=True)
    (tmp_path / "photo.png").write_bytes(photos[2])
    script = (
        "import sys, pathlib\n"
        "from inference.captioner import LocalCaptioner\n"
        "from inference.spec import CaptionerSpec\n"
        f"captioner = LocalCaptioner({str(model)!r}, CaptionerSpec(precision='auto', device='auto', threads=1))\n"
        f"caption = captioner.caption([pathlib.Path({str(tmp_path / 'photo.png')!r}).read_bytes()])[0]\n"
        "print(type(captioner.engine).__name__, 'torch' in sys.modules, bool(caption.text), 0 < caption.confidence <= 1)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["FastEngine", "False", "True", "True"]
    assert conversions(model) == [weights_key(model)]


def test_a_caption_does_not_depend_on_the_other_images_of_its_batch(fast, photos):
    """int8 activations are quantised per image (encoder) and per row (decoder), so micro-batching with
    other people's images never changes a caption: same tokens, same confidence."""
    for options in (GenerationOptions(max_new_tokens=8), GenerationOptions(num_beams=3, max_new_tokens=8, confidence_views=4)):
        together = fast.engine.generate([fast.decode(p) for p in photos], options)
        alone = [fast.engine.generate([fast.decode(p)], options)[0] for p in photos]
        assert [o.token_ids[:len(a.token_ids)] for o, a in zip(together, alone)] == [a.token_ids for a in alone]
        assert [o.confidence for o in together] == pytest.approx([a.confidence for a in alone], abs=1e-6)
