"""The engine on a CUDA GPU: fp32 gives the CPU's tokens; `auto` picks bf16 weights and stays close to fp32.

Skipped without a GPU (CI has none); run on a GPU machine with `pytest -m gpu` (docs/DEVELOPING.md).
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import skimage
import torch
import torch.nn.functional as F

from inference.captioner import LocalCaptioner
from inference.exact import ExactEngine
from inference.images import load_image
from inference.types import GenerationOptions
from tests.specs import exact_greedy

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
PHOTOS = ["astronaut.png", "rocket.jpg", "chelsea.png", "coffee.png", "camera.png"]


@pytest.fixture(scope="module")
def photos():
    return [load_image((SKIMAGE_DATA / name).read_bytes()) for name in PHOTOS]


def _first_step_logits(engine: ExactEngine, photos) -> torch.Tensor:
    pixels = engine.pixel_values(photos)
    start = torch.full((len(photos), 1), engine.model.config.decoder_start_token_id, device=engine.device)
    with torch.no_grad():
        return engine.model(pixel_values=pixels, decoder_input_ids=start).logits[:, -1].float().cpu()


@pytest.mark.parametrize("num_beams", [1, 3])
def test_cuda_fp32_generates_the_cpu_tokens(tiny_model_dir, photos, exact_cuda_math, num_beams):
    options = GenerationOptions(num_beams=num_beams, max_new_tokens=12, no_repeat_ngram_size=3)
    cpu = ExactEngine.load(tiny_model_dir, device="cpu", dtype="float32", batch_size=5)
    gpu = ExactEngine.load(tiny_model_dir, device="cuda", dtype="float32", batch_size=5)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
    assert [o.token_ids for o in gpu.generate(photos, options)] == [o.token_ids for o in cpu.generate(photos, options)]


def test_auto_dtype_on_a_gpu_is_bf16_and_close_to_fp32(tiny_model_dir, photos):
    fp32 = ExactEngine.load(tiny_model_dir, device="cuda", dtype="float32")
    bf16 = ExactEngine.load(tiny_model_dir, device="auto", dtype="auto")
    assert bf16.device.type == "cuda" and bf16.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in bf16.model.parameters())
    similarity = F.cosine_similarity(_first_step_logits(bf16, photos), _first_step_logits(fp32, photos), dim=-1)
    assert similarity.min() > 0.99, similarity
    texts = [o.text for o in bf16.generate(photos, GenerationOptions(max_new_tokens=12))]
    assert len(texts) == len(photos) and all(isinstance(t, str) for t in texts)


def test_local_captioner_serves_reloads_and_frees_the_gpu(tiny_model_dir):
    photo = (SKIMAGE_DATA / "chelsea.png").read_bytes()
    gc.collect()
    before = torch.cuda.memory_allocated()
    captioner = LocalCaptioner(tiny_model_dir, exact_greedy(device="auto", batch_size=4))
    try:
        first = captioner.caption([photo, photo])
        model_bytes = torch.cuda.memory_allocated() - before
        captioner.reload(tiny_model_dir)
        again = captioner.caption([photo])
    finally:
        captioner.close()
    gc.collect()
    assert first[0].text == first[1].text == again[0].text
    assert model_bytes > 0 and torch.cuda.memory_allocated() - before < model_bytes / 2  # close() let the weights go
