"""The BLIP, GIT, Florence-2 and SmolVLM engine on a CUDA GPU: fp32 gives the CPU's tokens; `auto` holds the
weights in bf16 and still captions. Skipped without a GPU (`pytest -m gpu` on a GPU machine)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from inference.family_engine import FamilyEngine
from inference.types import GenerationOptions

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

FAMILIES = ("blip", "git", "florence2", "smolvlm")


@pytest.fixture(scope="module")
def images(synthetic_dataset):
    shapes = [Image.open(p).convert("RGB") for p in sorted((synthetic_dataset.out_dir / "test").glob("*.png"))[:2]]
    return [*shapes, shapes[0].resize((24, 96))]


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("family", FAMILIES)
def test_cuda_fp32_generates_the_cpu_tokens(family_model_dirs, images, exact_cuda_math, family, num_beams):
    options = GenerationOptions(num_beams=num_beams, max_new_tokens=8)
    cpu = FamilyEngine.load(family_model_dirs[family], family, device="cpu", dtype="float32")
    gpu = FamilyEngine.load(family_model_dirs[family], family, device="cuda", dtype="float32")
    assert gpu.device_type == "cuda" and gpu.dtype == torch.float32
    assert [o.token_ids for o in gpu.generate(images, options)] == [o.token_ids for o in cpu.generate(images, options)]


@pytest.mark.parametrize("family", FAMILIES)
def test_auto_dtype_on_a_gpu_is_bf16_and_captions(family_model_dirs, images, family):
    engine = FamilyEngine.load(family_model_dirs[family], family, device="auto", dtype="auto")
    assert engine.device_type == "cuda" and engine.dtype == torch.bfloat16
    outputs = engine.generate(images, GenerationOptions(num_beams=3, num_alternatives=2, max_new_tokens=8))
    assert len(outputs) == len(images) and all(0 < o.confidence <= 1 for o in outputs)
    engine.release()
