"""CPU speed, side by side in one run: plain Hugging Face fp32 against capbot's exact and fast modes.

Every contender captions the same JPEG bytes end to end (decode, preprocess, generate, text) with the same
model, caption length (16 new tokens, no n-gram ban, so all do the same work) and thread count. Each
repeat runs every scenario for every contender before the next repeat (the order rotates), so a burst of
load from other work on the machine hits all of them alike; min and median are reported.

    python -m bench.cpu [--repeats 3] [--threads 1] [--scenarios b1-greedy,b1-beam4,b8-greedy,b32-greedy]
"""

from __future__ import annotations

import argparse
import io
import logging
from dataclasses import dataclass
from pathlib import Path

from bench.common import machine, photo_jpegs, print_table, save, summary, timed
from bench.models import full_size_model

NEW_TOKENS = 16


@dataclass(frozen=True)
class Scenario:
    name: str
    batch: int
    beams: int


SCENARIOS = {s.name: s for s in (
    Scenario("b1-greedy", 1, 1), Scenario("b1-beam4", 1, 4), Scenario("b8-greedy", 8, 1),
    Scenario("b8-beam4", 8, 4), Scenario("b32-greedy", 32, 1),
)}


class PlainHF:
    """What a user writes without capbot (the nlpconnect model card): ViTImageProcessor + generate, fp32."""

    name = "plain HF fp32"

    def __init__(self, model_dir: Path) -> None:
        import torch
        from transformers import AutoTokenizer, ViTImageProcessor, VisionEncoderDecoderModel

        self.torch = torch
        self.model = VisionEncoderDecoderModel.from_pretrained(model_dir).eval()
        self.processor = ViTImageProcessor.from_pretrained(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def caption(self, jpegs: list[bytes], beams: int) -> list[str]:
        from PIL import Image

        images = [Image.open(io.BytesIO(data)).convert("RGB") for data in jpegs]
        pixels = self.processor(images=images, return_tensors="pt").pixel_values
        with self.torch.no_grad():
            ids = self.model.generate(pixels, max_new_tokens=NEW_TOKENS, num_beams=beams, do_sample=False)
        return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]


class Capbot:
    """capbot's `LocalCaptioner` in one precision mode."""

    def __init__(self, model_dir: Path, precision: str, threads: int) -> None:
        from inference.captioner import LocalCaptioner
        from inference.spec import CaptionerSpec

        self.name = f"capbot {precision}"
        self.captioner = LocalCaptioner(model_dir, CaptionerSpec(device="cpu", precision=precision, threads=threads,
                                                                 batch_size=32))

    def caption(self, jpegs: list[bytes], beams: int) -> list[str]:
        from inference.types import GenerationOptions

        options = GenerationOptions(num_beams=beams, max_new_tokens=NEW_TOKENS, no_repeat_ngram_size=0)
        return [c.text for c in self.captioner.caption(jpegs, options)]


def run(model_dir: Path, scenarios: list[Scenario], repeats: int, threads: int) -> dict:
    """Time every scenario for every contender, interleaved; returns the results."""
    import torch

    torch.set_num_threads(threads)
    contenders = [PlainHF(model_dir), Capbot(model_dir, "exact", threads), Capbot(model_dir, "fast", threads)]
    jpegs = photo_jpegs(max(32, max(s.batch for s in scenarios)))
    times: dict[tuple[str, str], list[float]] = {}
    texts: dict[tuple[str, str], list[str]] = {}
    for scenario in scenarios:  # warm-up, and the captions compared below
        for contender in contenders:
            texts[(scenario.name, contender.name)] = contender.caption(jpegs[:scenario.batch], scenario.beams)
    for repeat in range(repeats):
        for scenario in scenarios:
            shift = repeat % len(contenders)
            for contender in contenders[shift:] + contenders[:shift]:
                start = (repeat * scenario.batch) % len(jpegs)
                batch = (jpegs * 2)[start:start + scenario.batch]
                seconds = timed(lambda: contender.caption(batch, scenario.beams))
                times.setdefault((scenario.name, contender.name), []).append(seconds)
        logging.getLogger("bench").info("repeat done", extra={"repeat": repeat + 1})
    return {"machine": machine(), "threads": threads, "repeats": repeats, "new_tokens": NEW_TOKENS,
            "model": str(model_dir), "results": _results(scenarios, contenders, times, texts)}


def _results(scenarios, contenders, times, texts) -> list[dict]:
    rows = []
    for scenario in scenarios:
        base = summary(times[(scenario.name, contenders[0].name)])
        reference = texts[(scenario.name, contenders[0].name)]
        for contender in contenders:
            stats = summary(times[(scenario.name, contender.name)])
            same = sum(a == b for a, b in zip(texts[(scenario.name, contender.name)], reference))
            rows.append({
                "scenario": scenario.name, "batch": scenario.batch, "beams": scenario.beams, "path": contender.name,
                **stats, "images_per_s": round(scenario.batch / (stats["median_ms"] / 1000), 2),
                "speedup_median": round(base["median_ms"] / stats["median_ms"], 2),
                "speedup_min": round(base["min_ms"] / stats["min_ms"], 2),
                "same_text_as_hf": f"{same}/{len(reference)}",
            })
    return rows


def print_results(payload: dict) -> None:
    rows = [[r["scenario"], r["path"], r["min_ms"], r["median_ms"], r["p95_ms"], r["images_per_s"],
             f'{r["speedup_median"]}x', f'{r["speedup_min"]}x', r["same_text_as_hf"]] for r in payload["results"]]
    print_table(f"CPU, {payload['threads']} thread(s), {payload['repeats']} interleaved repeats, "
                f"{payload['new_tokens']} new tokens ({payload['machine']['cpu']})",
                ["scenario", "path", "min ms", "median ms", "p95 ms", "images/s", "speed-up (median)",
                 "speed-up (min)", "same text as HF"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scenarios", default="b1-greedy,b1-beam4,b8-greedy,b32-greedy")
    parser.add_argument("--model-dir", type=Path, default=Path("bench/.models/full"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    scenarios = [SCENARIOS[name] for name in args.scenarios.split(",")]
    payload = run(full_size_model(args.model_dir), scenarios, args.repeats, args.threads)
    print_results(payload)
    print(f"\nwritten: {save('cpu', payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
