"""The fast path's fidelity bar on a trained model (random weights say nothing about it): on the trained
tiny fixture's 200 held-out images, identical captions on at least 98% of them, or a CIDEr within 1% of
the exact path's. This bar is why `auto` means fast on the CPU (docs/performance.md)."""

from __future__ import annotations

import shutil

import pytest

from inference.captioner import LocalCaptioner
from inference.types import GenerationOptions
from tests.specs import exact_greedy
from training.data.coco import load_split
from training.evaluate import score_captions

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # may wait for the shared fixture (~5-20 min)


@pytest.mark.parametrize("options", [GenerationOptions(), GenerationOptions(num_beams=4)], ids=["greedy", "beam4"])
def test_fast_captions_match_exact_on_held_out_images(trained_tiny_model, tmp_path_factory, options):
    model = shutil.copytree(trained_tiny_model.model_dir, tmp_path_factory.mktemp("fidelity") / "model")
    test = load_split(trained_tiny_model.data_dir, "test")
    images = [item.path.read_bytes() for item in test.items]
    references = {item.image_id: list(item.captions) for item in test.items}
    texts = {}
    for precision in ("exact", "fast"):
        captioner = LocalCaptioner(model, exact_greedy(precision=precision, threads=1, batch_size=50))
        texts[precision] = [c.text for c in captioner.caption(images, options)]
    identical = sum(a == b for a, b in zip(texts["exact"], texts["fast"])) / len(images)
    cider = {p: score_captions(dict(zip(references, t)), references, with_meteor=False).cider for p, t in texts.items()}
    print(f"{len(images)} held-out images: {identical:.1%} of fast captions identical to exact; "
          f"CIDEr exact {cider['exact']:.3f}, fast {cider['fast']:.3f}")
    assert identical >= 0.98 or abs(cider["fast"] - cider["exact"]) <= 0.01 * cider["exact"], (identical, cider)
    assert identical >= 0.9  # either way, int8 rarely changes a caption
