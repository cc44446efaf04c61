"""Fidelity of the families' fast path on trained models: identical captions and CIDEr, fp32 against fast.

Random weights say nothing about whether int8 changes real captions, so this trains a tiny BLIP and a tiny
GIT (tests/families.py's builders, width 64) from scratch on synthetic shapes with a plain torch loop
(labels as the model cards train them: the caption's tokens, padding masked), then captions the held-out
test split greedily with plain fp32 `generate` and with `quantize_for_cpu`'s model (fp16 and int8 text
weights), one image per call (the
fast path's serving case: torch's dynamic int8 scales activations over a whole call, so a batched call
could make a caption depend on its batch-mates) and in calls of 8, and scores both with capbot's CIDEr.

    python -m bench.family_fidelity [--families blip,git] [--steps 5000] [--root bench/.models/family_fidelity]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import time
from pathlib import Path

from bench.common import RESULTS, machine, print_table, write_json

ROOT = Path(__file__).resolve().parent
log = logging.getLogger("bench")
MAX_TOKENS = 24


def dataset(root: Path, n_train: int, n_test: int) -> Path:
    """The synthetic shapes dataset under `root/data` (written once)."""
    from training.data.synthetic import generate_synthetic

    out = root / "data"
    if not (out / "annotations" / "captions_test.json").is_file():
        generate_synthetic(out, n_train=n_train, n_val=16, n_test=n_test, seed=0, image_size=64)
    return out


def train(family: str, data: Path, out: Path, steps: int, batch: int = 32, lr: float = 1e-3) -> Path:
    """A tiny `family` model trained from scratch on `data`'s train split, saved to `out` (once)."""
    import torch
    from PIL import Image

    from tests.families import build_family_model, load_family_model, synthetic_captions
    from training.data.coco import load_split

    done = out / "trained.json"
    if done.is_file() and json.loads(done.read_text()).get("steps") == steps:
        return out
    shutil.rmtree(out, ignore_errors=True)  # none yet, or trained for another number of steps
    build_family_model(family, out, synthetic_captions(data))
    model, processor = load_family_model(out)
    items = load_split(data, "train").items
    # 1. every image's pixels once, every caption's tokens (the card's [CLS] caption [SEP]) once
    pixels = processor(images=[Image.open(i.path).convert("RGB") for i in items], return_tensors="pt").pixel_values
    pairs = [(index, caption) for index, item in enumerate(items) for caption in item.captions]
    encoded = processor.tokenizer([c for _, c in pairs], padding="max_length", truncation=True,
                                  max_length=MAX_TOKENS, return_tensors="pt")
    ids, mask = encoded.input_ids, encoded.attention_mask
    if family == "blip":  # BLIP's decoder starts from [DEC] (its bos), where the tokenizer writes [CLS]
        ids[:, 0] = model.config.text_config.bos_token_id
    image_of = torch.tensor([index for index, _ in pairs])
    # 2. AdamW with linear warm-up and cosine decay
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / steps)))))
    generator = torch.Generator().manual_seed(0)
    model.train()
    started = time.perf_counter()
    for step in range(steps):
        rows = torch.randint(len(pairs), (batch,), generator=generator)
        labels = ids[rows].masked_fill(mask[rows] == 0, -100)
        loss = model(pixel_values=pixels[image_of[rows]], input_ids=ids[rows], attention_mask=mask[rows],
                     labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 200 == 0 or step == steps - 1:
            log.info("train %s step %d loss %.3f (%.0f s)", family, step, loss.item(), time.perf_counter() - started)
    model.eval().save_pretrained(out)
    (out / "trained.json").write_text(json.dumps({"steps": steps, "batch": batch, "lr": lr,
                                                  "train_s": round(time.perf_counter() - started)}))
    return out


def compare(family: str, model_dir: Path, data: Path) -> list[dict]:
    """fp32 against fast captions of the test split (fp16 and int8 text weights), one image per call and in
    calls of 8."""
    from PIL import Image

    from inference.fast.families import TEXT_WEIGHTS, quantize_for_cpu
    from tests.families import load_family_model, model_card_captions
    from training.data.coco import load_split
    from training.evaluate import score_captions

    test = load_split(data, "test").items
    images = [Image.open(item.path).convert("RGB") for item in test]
    references = {item.image_id: list(item.captions) for item in test}
    exact, processor = load_family_model(model_dir)

    def captions(model, batch):
        return [t for start in range(0, len(images), batch)
                for t in model_card_captions(family, model, processor, images[start:start + batch],
                                             max_new_tokens=MAX_TOKENS)]

    def cider(texts):
        return score_captions(dict(zip(references, texts)), references, with_meteor=False).cider

    rows = []
    for text in TEXT_WEIGHTS:
        fast = quantize_for_cpu(load_family_model(model_dir)[0], family, model_dir=model_dir, text=text)
        for batch in (1, 8):
            expected, got = captions(exact, batch), captions(fast, batch)
            before, after = cider(expected), cider(got)
            same = sum(a == b for a, b in zip(expected, got))
            rows.append({"family": family, "text": text, "batch": batch, "images": len(images), "identical": same,
                         "identical_pct": round(100 * same / len(images), 1), "cider_exact": round(before, 4),
                         "cider_fast": round(after, 4), "cider_change_pct": round(100 * (after - before) / before, 2),
                         "differences": [(a, b) for a, b in zip(expected, got) if a != b][:8]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="blip,git")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--test-images", type=int, default=200)
    parser.add_argument("--root", type=Path, default=ROOT / ".models" / "family_fidelity")
    parser.add_argument("--out", type=Path, default=RESULTS / "family_fidelity.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    log.setLevel(logging.INFO)
    import torch

    torch.set_num_threads(1)  # a tiny model on a shared machine: one thread (README)
    data = dataset(args.root, args.train_images, args.test_images)
    rows = [row for family in args.families.split(",")
            for row in compare(family, train(family, data, args.root / family, args.steps), data)]
    payload = {"machine": machine(), "steps": args.steps, "results": rows}
    print_table("Fidelity of the families' fast path: fp32 generate against quantize_for_cpu, trained tiny models, "
                "greedy", ["family", "text weights", "images per call", "images", "identical captions", "CIDEr fp32",
                           "CIDEr fast", "CIDEr change"],
                [[r["family"], r["text"], r["batch"], r["images"], f'{r["identical"]} ({r["identical_pct"]}%)',
                  r["cider_exact"],
                  r["cider_fast"], f'{r["cider_change_pct"]}%'] for r in rows])
    print(f"\nwritten: {write_json(args.out, payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
