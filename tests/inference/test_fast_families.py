"""The CPU fast path of BLIP, GIT, Florence-2 and SmolVLM (`inference.fast.families.quantize_for_cpu`): its
captions are the fp32 model's, its int8 vision graph is built once per weights and reused, an unreadable one
is rebuilt, and the fast mode of `load_engine` serves it.

The bar for captions on these tiny random models: the int8 vision tower's features within 10% (relative, L2)
of fp32's, and at least 3 of 4 greedy captions identical to fp32 `generate`'s. Not all 4: random weights of
width 64 give near-flat next-token distributions, where int8 rounding can flip a near-tie that a trained
model would not have (fidelity on trained models: docs/performance.md, "Other families").
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

from inference.fast import vision
from inference.fast.families import SITES, quantize_for_cpu
from inference.fast.vision import GRAPH_FILE, OrtVisionTower
from tests.families import caption_inputs, load_family_model, model_card_captions

FAMILIES = tuple(SITES)  # blip, git, florence2, smolvlm
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def built(family_model_dirs):
    """The session's tiny model of each family (tests/conftest.py), by family."""
    return family_model_dirs


@pytest.fixture(scope="module")
def images(synthetic_dataset):
    return [Image.open(p).convert("RGB") for p in sorted((synthetic_dataset.out_dir / "test").glob("*.png"))[:4]]


@pytest.fixture
def exports(monkeypatch):
    """Counts the ONNX exports (the real export runs)."""
    calls = []
    real = vision.export_vision_graph

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(vision, "export_vision_graph", counting)
    return calls


def _tower(model, family):
    return model.get_submodule(SITES[family].path)


@pytest.mark.parametrize("family", FAMILIES)
def test_fast_captions_are_the_fp32_models(built, images, family):
    exact, processor = load_family_model(built[family])
    expected = model_card_captions(family, exact, processor, images, max_new_tokens=NEW_TOKENS)
    pixels = caption_inputs(family, processor, images[:1])["pixel_values"]
    pixels = pixels.flatten(0, 1) if pixels.ndim == 5 else pixels  # SmolVLM: (images, tiles, ...) -> tiles
    with torch.no_grad():
        reference = _tower(exact, family)(pixels).last_hidden_state

    fast = quantize_for_cpu(load_family_model(built[family])[0], family, model_dir=built[family])
    tower = _tower(fast, family)
    with torch.no_grad():
        served = tower(pixels).last_hidden_state
    got = model_card_captions(family, fast, processor, images, max_new_tokens=NEW_TOKENS)

    assert isinstance(tower, OrtVisionTower)
    assert not any(type(m) is torch.nn.Linear for m in fast.modules())  # every Linear is quantized now
    assert {m._packed_params.dtype for m in fast.modules()
            if isinstance(m, DynamicLinear)} == {torch.float16}  # the default text weights
    assert served.shape == reference.shape
    assert ((served - reference).norm() / reference.norm()).item() < 0.10
    assert sum(a == b for a, b in zip(expected, got)) >= 3, (expected, got)


def test_the_graph_is_built_once_and_reused(built, images, exports, tmp_path):
    family = "git"
    cache = tmp_path / "cache"
    first = quantize_for_cpu(load_family_model(built[family])[0], family, model_dir=built[family], cache_dir=cache,
                             beside=False)
    second = quantize_for_cpu(load_family_model(built[family])[0], family, model_dir=built[family], cache_dir=cache,
                              beside=False)

    # One export: the second load reused it. (Not zero: beside=False, the hub snapshot case, ignores the
    # conversion an earlier test left beside the model.)
    assert len(exports) == 1
    folders = list((cache / built[family].name).glob("vision-git-*"))
    assert len(folders) == 1 and (folders[0] / GRAPH_FILE).is_file()
    processor = load_family_model(built[family])[1]
    assert model_card_captions(family, first, processor, images, max_new_tokens=NEW_TOKENS) == \
        model_card_captions(family, second, processor, images, max_new_tokens=NEW_TOKENS)


def test_other_weights_get_a_new_graph_and_the_stale_one_goes(built, exports, tmp_path):
    family, cache = "blip", tmp_path / "cache"
    quantize_for_cpu(load_family_model(built[family])[0], family, model_dir=built[family], cache_dir=cache,
                     beside=False)
    changed = load_family_model(built[family])[0]
    with torch.no_grad():
        _tower(changed, family).post_layernorm.bias.add_(0.5)  # e.g. a fine-tuned tower
    quantize_for_cpu(changed, family, model_dir=built[family], cache_dir=cache, beside=False)

    assert len(exports) == 2
    assert len(list((cache / built[family].name).glob("vision-blip-*"))) == 1


@pytest.mark.parametrize("damage", ["garbage", "truncated", "meta"])
def test_an_unreadable_graph_is_rebuilt(built, images, exports, tmp_path, damage):
    family, cache = "florence2", tmp_path / "cache"
    quantize_for_cpu(load_family_model(built[family])[0], family, model_dir=built[family], cache_dir=cache,
                     beside=False)
    folder = next((cache / built[family].name).glob("vision-florence2-*"))
    if damage == "garbage":
        (folder / GRAPH_FILE).write_bytes(b"not an onnx graph")
    elif damage == "truncated":
        data = (folder / GRAPH_FILE).read_bytes()
        (folder / GRAPH_FILE).write_bytes(data[: len(data) // 2])
    else:
        (folder / vision.META_FILE).write_text("{")

    model, processor = load_family_model(built[family])
    fast = quantize_for_cpu(model, family, model_dir=built[family], cache_dir=cache, beside=False)

    assert len(exports) == 2
    assert isinstance(_tower(fast, family), OrtVisionTower)
    assert len(model_card_captions(family, fast, processor, images[:1], max_new_tokens=NEW_TOKENS)) == 1


def test_a_padded_smolvlm_tile_goes_to_the_fp32_tower(built):
    family = "smolvlm"
    exact = load_family_model(built[family])[0]
    fast = quantize_for_cpu(load_family_model(built[family])[0], family, model_dir=built[family])
    size = exact.config.vision_config.image_size
    patches = size // exact.config.vision_config.patch_size
    pixels = torch.rand(1, 3, size, size)
    mask = torch.ones(1, patches, patches, dtype=torch.bool)
    mask[:, :, patches // 2:] = False
    with torch.no_grad():
        expected = _tower(exact, family)(pixels, patch_attention_mask=mask).last_hidden_state
        got = _tower(fast, family)(pixels, patch_attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("family", ["blip", "smolvlm"])
def test_the_fast_mode_serves_the_quantized_model(built, images, family):
    from inference.captioner import load_engine
    from inference.family_engine import FamilyEngine
    from inference.spec import CaptionerSpec
    from inference.types import GenerationOptions

    engine = load_engine(built[family], CaptionerSpec(device="cpu", precision="fast", threads=1))
    outputs = engine.generate(images[:2], GenerationOptions(max_new_tokens=NEW_TOKENS))

    assert isinstance(engine, FamilyEngine)
    assert isinstance(_tower(engine.model, family), OrtVisionTower)
    assert len(outputs) == 2 and all(isinstance(o.text, str) for o in outputs)


def test_int8_text_weights_are_an_option_and_other_choices_are_refused(built, images):
    family = "git"
    model, processor = load_family_model(built[family])
    fast = quantize_for_cpu(model, family, model_dir=built[family], text="int8")
    dtypes = {m._packed_params.dtype for m in fast.modules() if isinstance(m, DynamicLinear)}

    assert dtypes == {torch.qint8}
    assert len(model_card_captions(family, fast, processor, images[:2], max_new_tokens=NEW_TOKENS)) == 2
    with pytest.raises(ValueError, match="fp16, int8"):
        quantize_for_cpu(load_family_model(built[family])[0], family, model_dir=built[family], text="int4")
    with pytest.raises(ValueError, match="quantize_for_cpu already"):
        quantize_for_cpu(fast, family, model_dir=built[family])
