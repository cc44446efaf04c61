"""Fidelity of the fast path on a trained model: identical captions and CIDEr, exact against fast.

The issue's bar: identical captions on at least 98% of images, or CIDEr within 1% of exact. Measured on
the trained tiny fixture's 200 held-out test images (random weights say nothing about fidelity), for the
serving defaults (greedy, n-gram ban 3) and for beam search.

    python -m bench.fidelity [--root bench/.models/trained_tiny]
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from bench.common import machine, print_table, save
from bench.models import trained_tiny_model

OPTION_SETS = {
    "greedy (serving default)": dict(num_beams=1, max_new_tokens=24, no_repeat_ngram_size=3),
    "beam 4": dict(num_beams=4, max_new_tokens=24, no_repeat_ngram_size=3),
}


def run(model_dir: Path, data_dir: Path) -> dict:
    from inference.captioner import LocalCaptioner
    from inference.spec import CaptionerSpec
    from inference.types import GenerationOptions
    from training.data.coco import load_split
    from training.evaluate import score_captions

    test = load_split(data_dir, "test")
    images = [item.path.read_bytes() for item in test.items]
    references = {item.image_id: list(item.captions) for item in test.items}
    captioners = {mode: LocalCaptioner(model_dir, CaptionerSpec(device="cpu", precision=mode, threads=1, batch_size=50))
                  for mode in ("exact", "fast")}
    rows = []
    for name, kwargs in OPTION_SETS.items():
        options = GenerationOptions(**kwargs)
        texts = {mode: [c.text for c in captioner.caption(images, options)] for mode, captioner in captioners.items()}
        cider = {mode: score_captions(dict(zip(references, texts[mode])), references, with_meteor=False).cider
                 for mode in texts}
        same = sum(a == b for a, b in zip(texts["exact"], texts["fast"]))
        rows.append({"options": name, "images": len(images), "identical": same,
                     "identical_pct": round(100 * same / len(images), 1),
                     "cider_exact": round(cider["exact"], 4), "cider_fast": round(cider["fast"], 4),
                     "cider_change_pct": round(100 * (cider["fast"] - cider["exact"]) / cider["exact"], 2),
                     "differences": [(a, b) for a, b in zip(texts["exact"], texts["fast"]) if a != b][:10]})
    return {"machine": machine(), "model": str(model_dir), "results": rows}


def print_results(payload: dict) -> None:
    print_table("Fidelity: fast against exact on the trained tiny model's test split",
                ["options", "images", "identical captions", "CIDEr exact", "CIDEr fast", "CIDEr change"],
                [[r["options"], r["images"], f'{r["identical"]} ({r["identical_pct"]}%)', r["cider_exact"],
                  r["cider_fast"], f'{r["cider_change_pct"]}%'] for r in payload["results"]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("bench/.models/trained_tiny"),
                        help="where the trained tiny model is (trained there first, ~20 min on 2 cores, if missing)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    model_dir = trained_tiny_model(args.root)
    payload = run(model_dir, args.root / "data")
    print_results(payload)
    print(f"\nwritten: {save('fidelity', payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
