"""CPU speed of every non-ViT+GPT-2 family at batch 1: plain HF fp32 `generate` against the fast path
(`inference.fast.families.quantize_for_cpu`, with fp16 and int8 text weights), side by side in one run.

Each family is its full-size architecture with random weights, from a config written here with the hub
checkpoint's sizes (hidden sizes, layers, heads, vocabulary, image size): Salesforce/blip-image-captioning-base,
microsoft/git-base, florence-community/Florence-2-base and HuggingFaceTB/SmolVLM-256M-Instruct. A caption is
end to end from a decoded photo: the family's image processor, then greedy `generate` of exactly `--tokens`
new tokens (`min_new_tokens` too: random weights would otherwise stop at different points). Both paths
caption the same images, interleaved image by image (the order rotates every repeat), at each thread count;
min and median ms per caption are reported, and how many captions have HF's exact tokens (random weights
have near-flat distributions, so this says little about fidelity: see bench.family_fidelity).

SmolVLM's image processor runs with `do_image_splitting=False` (one 512 px view, 64 image tokens): the card's
default splits a photo into up to 16 tiles plus the global view, which multiplies the vision tower's work
for both paths alike and made one HF caption take tens of seconds here.

    python -m bench.families [--families blip,git,florence2,smolvlm] [--threads 1,2] [--repeats 2] [--smoke]
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bench.common import RESULTS, machine, photo_jpegs, print_table, summary, timed, write_json

ROOT = Path(__file__).resolve().parent
FAMILIES = ("blip", "git", "florence2", "smolvlm")
SMOLVLM_TILE_TOKENS = 64  # (512 / 16)^2 patches / scale_factor^2 (4^2)


@dataclass(frozen=True)
class Sizes:
    """The knobs that separate a full-size model from the smoke test's tiny one."""

    width: int = 768  # hidden size of every transformer (SmolVLM's text model: 576)
    layers: int = 12
    heads: int = 12
    smoke: bool = False

    def scaled(self, value: int) -> int:
        """`value` (a full-size count) as it is at these sizes."""
        return value if not self.smoke else max(1, value // 12)


FULL, SMOKE = Sizes(), Sizes(width=64, layers=1, heads=2, smoke=True)


# --- one builder per family: (model, image processor, inputs(pixels-dict) -> generate kwargs) ---
def build_blip(sizes: Sizes) -> tuple[Any, Any, Callable]:
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessorPil

    image = 384 if not sizes.smoke else 64
    config = BlipConfig(
        vision_config=dict(hidden_size=sizes.width, intermediate_size=4 * sizes.width, num_hidden_layers=sizes.layers,
                           num_attention_heads=sizes.heads, image_size=image, patch_size=16),
        text_config=dict(vocab_size=30524 if not sizes.smoke else 500, hidden_size=sizes.width,
                         encoder_hidden_size=sizes.width, intermediate_size=4 * sizes.width,
                         num_hidden_layers=sizes.layers, num_attention_heads=sizes.heads,
                         max_position_embeddings=512, bos_token_id=30522 if not sizes.smoke else 498,
                         pad_token_id=0, sep_token_id=102, eos_token_id=102),
        projection_dim=sizes.width, image_text_hidden_size=sizes.width,
    )
    processor = BlipImageProcessorPil(size={"height": image, "width": image})
    return BlipForConditionalGeneration(config), processor, lambda px: {"pixel_values": px["pixel_values"]}


def build_git(sizes: Sizes) -> tuple[Any, Any, Callable]:
    from transformers import CLIPImageProcessorPil, GitConfig, GitForCausalLM

    image = 224 if not sizes.smoke else 64
    config = GitConfig(
        vision_config=dict(hidden_size=sizes.width, intermediate_size=4 * sizes.width, num_hidden_layers=sizes.layers,
                           num_attention_heads=sizes.heads, image_size=image, patch_size=16),
        vocab_size=30522 if not sizes.smoke else 500, hidden_size=sizes.width, intermediate_size=4 * sizes.width,
        num_hidden_layers=sizes.scaled(6), num_attention_heads=sizes.heads,
        max_position_embeddings=1024, bos_token_id=101, eos_token_id=102, pad_token_id=0,
    )
    processor = CLIPImageProcessorPil(size={"shortest_edge": image}, crop_size={"height": image, "width": image})
    return GitForCausalLM(config), processor, lambda px: {"pixel_values": px["pixel_values"]}


def build_florence2(sizes: Sizes) -> tuple[Any, Any, Callable]:
    import torch
    from transformers import CLIPImageProcessorPil, Florence2Config, Florence2ForConditionalGeneration

    if sizes.smoke:
        image, vision = 64, dict(depths=[1, 1, 1], patch_size=[7, 3, 3], patch_stride=[4, 2, 2],
                                 patch_padding=[3, 1, 1], patch_prenorm=[False, True, True], embed_dim=[16, 32, 64],
                                 num_heads=[1, 2, 2], num_groups=[1, 2, 2], window_size=2)
    else:  # Florence-2-base's DaViT: 768 px in, 24 x 24 (+1) image tokens out
        image, vision = 768, dict(depths=[1, 1, 9, 1], patch_size=[7, 3, 3, 3], patch_stride=[4, 2, 2, 2],
                                  patch_padding=[3, 1, 1, 1], patch_prenorm=[False, True, True, True],
                                  embed_dim=[128, 256, 512, 1024], num_heads=[4, 8, 16, 32],
                                  num_groups=[4, 8, 16, 32], window_size=12)
    vocab = 51289 if not sizes.smoke else 500
    image_token = vocab - 1
    text = dict(vocab_size=vocab, d_model=sizes.width, encoder_layers=sizes.scaled(6), decoder_layers=sizes.scaled(6),
                encoder_attention_heads=sizes.heads, decoder_attention_heads=sizes.heads,
                encoder_ffn_dim=4 * sizes.width, decoder_ffn_dim=4 * sizes.width, max_position_embeddings=1024,
                bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2)
    config = Florence2Config(vision_config={**vision, "projection_dim": sizes.width, "drop_path_rate": 0.0},
                             text_config=text, image_token_id=image_token)
    processor = CLIPImageProcessorPil(size={"height": image, "width": image}, do_center_crop=False,
                                   image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    grid = image // (32 if not sizes.smoke else 16)
    # The processor's input for <CAPTION>: the image tokens, then "<s>What does the image describe?</s>" (8 tokens).
    prompt = torch.tensor([[image_token] * (grid * grid + 1) + _text_ids([0, 2264, 473, 5, 2274, 6190, 116, 2], vocab)])
    return (Florence2ForConditionalGeneration(config), processor,
            lambda px: {"pixel_values": px["pixel_values"], "input_ids": prompt,
                        "attention_mask": torch.ones_like(prompt)})


def build_smolvlm(sizes: Sizes) -> tuple[Any, Any, Callable]:
    import torch
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessorPil

    tile = 512 if not sizes.smoke else 64
    vocab = 49280 if not sizes.smoke else 500
    image_token, around, global_img = vocab - 3, vocab - 2, vocab - 1
    text_width = 576 if not sizes.smoke else 64
    full = not sizes.smoke
    text = dict(model_type="llama", vocab_size=vocab, hidden_size=text_width, intermediate_size=1536 if full else 128,
                num_hidden_layers=30 if full else 1, num_attention_heads=9 if full else 2,
                num_key_value_heads=3 if full else 1, head_dim=64 if full else 32,
                max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
                pad_token_id=2, tie_word_embeddings=False)
    vision = dict(hidden_size=sizes.width, intermediate_size=4 * sizes.width, num_hidden_layers=sizes.layers,
                  num_attention_heads=sizes.heads, image_size=tile, patch_size=16)
    scale = 4 if not sizes.smoke else 2
    config = Idefics3Config(vision_config=vision, text_config=text, scale_factor=scale, image_token_id=image_token,
                            pad_token_id=2)
    processor = Idefics3ImageProcessorPil(size={"longest_edge": tile}, max_image_size={"longest_edge": tile},
                                       do_image_splitting=False)
    image_tokens = (tile // 16) ** 2 // scale**2
    # The chat template's "<|im_start|>User:<image>Caption this image.<end_of_utterance>\nAssistant:", with the
    # processor's expansion of <image> for one view: <fake_token_around_image><global-img><image>*64<fake...>.
    prompt = torch.tensor([_text_ids([1, 11126, 42], vocab) + [around, global_img] + [image_token] * image_tokens
                           + [around] + _text_ids([14436, 451, 2017, 30, 49279, 198, 9519, 9531, 42], vocab)])
    return (Idefics3ForConditionalGeneration(config), processor,
            lambda px: {"pixel_values": px["pixel_values"], "pixel_attention_mask": px["pixel_attention_mask"],
                        "input_ids": prompt, "attention_mask": torch.ones_like(prompt)})


def _text_ids(ids: list[int], vocab: int) -> list[int]:
    """Prompt token ids of the hub tokenizer, folded into a smoke model's small vocabulary (clear of the image
    tokens at its end)."""
    return [i % (vocab - 4) for i in ids]


BUILDERS = {"blip": build_blip, "git": build_git, "florence2": build_florence2, "smolvlm": build_smolvlm}


class Contender:
    """One way to caption: a model, the family's image processor, and the generate inputs built from them."""

    def __init__(self, name: str, family: str, model: Any, processor: Any, inputs: Callable, tokens: int) -> None:
        self.name, self.family, self.model, self.processor, self.inputs = name, family, model, processor, inputs
        self.tokens = tokens

    def caption(self, image: Any) -> list[int]:
        import torch

        pixels = self.processor(images=[image] if self.family != "smolvlm" else [[image]], return_tensors="pt")
        inputs = self.inputs(pixels)
        with torch.inference_mode():
            out = self.model.generate(**inputs, do_sample=False, num_beams=1, max_new_tokens=self.tokens,
                                      min_new_tokens=self.tokens)
        new = out[0, inputs["input_ids"].shape[1]:] if self.family == "smolvlm" else out[0]
        return new.tolist()


def run_family(family: str, sizes: Sizes, threads_list: list[int], repeats: int, images: list, tokens: int,
               cache: Path, texts: list[str]) -> list[dict]:
    """Both paths of one family at each thread count, interleaved image by image; returns the table rows."""
    import torch

    from inference.fast.families import quantize_for_cpu

    torch.manual_seed(0)  # the same random weights every run, so the cached int8 graph is reused
    model, processor, inputs = BUILDERS[family](sizes)
    model = model.eval()
    model_dir = cache / family  # where the int8 vision graph is cached (and Florence-2 reads its image size)
    model_dir.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(model_dir)
    rows = []
    for threads in threads_list:
        torch.set_num_threads(threads)
        contenders = [Contender("plain HF fp32", family, model, processor, inputs, tokens)] + [
            Contender(f"capbot fast (text {text})", family,
                      quantize_for_cpu(copy.deepcopy(model), family, model_dir=model_dir, threads=threads, text=text),
                      processor, inputs, tokens) for text in texts]
        ids = {c.name: [c.caption(image) for image in images] for c in contenders}  # warm-up, compared below
        times: dict[str, list[float]] = {c.name: [] for c in contenders}
        for repeat in range(repeats):
            for image in images:
                shift = repeat % len(contenders)
                for contender in contenders[shift:] + contenders[:shift]:
                    times[contender.name].append(timed(lambda: contender.caption(image)))
        base = summary(times[contenders[0].name])
        for contender in contenders:
            stats = summary(times[contender.name])
            same = sum(a == b for a, b in zip(ids[contender.name], ids[contenders[0].name]))
            rows.append({"family": family, "threads": threads, "path": contender.name, **stats,
                         "speedup_median": round(base["median_ms"] / stats["median_ms"], 2),
                         "speedup_min": round(base["min_ms"] / stats["min_ms"], 2),
                         "same_tokens_as_hf": f"{same}/{len(images)}",
                         "tokens": len(ids[contender.name][0])})
        logging.getLogger("bench").info("%s done at %d thread(s)", family, threads)
    return rows


def print_results(payload: dict) -> None:
    rows = [[r["family"], r["threads"], r["path"], r["min_ms"], r["median_ms"], f'{r["speedup_median"]}x',
             f'{r["speedup_min"]}x', r["same_tokens_as_hf"]] for r in payload["results"]]
    print_table(f"Families on the CPU, batch 1 greedy, {payload['tokens']} new tokens, {payload['images']} images x "
                f"{payload['repeats']} interleaved repeats ({payload['machine']['cpu']})",
                ["family", "threads", "path", "min ms", "median ms", "speed-up (median)", "speed-up (min)",
                 "same tokens as HF"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--text", default="fp16,int8", help="the fast path's text weights to time (fp16, int8)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one image, one repeat (the test suite)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="where the int8 vision graphs are cached (default bench/.models/families[-smoke])")
    parser.add_argument("--out", type=Path, default=RESULTS / "families.json")
    args = parser.parse_args(argv)
    # torch's OpenMP workers sleep instead of spinning between ops (read when torch loads: set before import).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Progress only: ONNX Runtime's quantiser logs every tensor at INFO on the root logger.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    import io

    from PIL import Image

    sizes = SMOKE if args.smoke else FULL
    cache = args.cache or ROOT / ".models" / ("families-smoke" if args.smoke else "families")
    count, repeats, tokens = (1, 1, 4) if args.smoke else (args.images, args.repeats, args.tokens)
    images = [Image.open(io.BytesIO(data)).convert("RGB") for data in photo_jpegs(count)]
    threads = [int(t) for t in args.threads.split(",")]
    rows = [row for family in args.families.split(",")
            for row in run_family(family, sizes, threads, repeats, images, tokens, cache, args.text.split(","))]
    payload = {"machine": machine(), "smoke": args.smoke, "tokens": tokens, "images": count, "repeats": repeats,
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "results": rows}
    print_results(payload)
    print(f"\nwritten: {write_json(args.out, payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
