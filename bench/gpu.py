"""GPU benchmarks, plain Hugging Face on the same card in the same run (`make bench-gpu`).

1. Batch-1 latency, greedy, 16 tokens: plain HF fp32 `generate`, HF bf16 with a static cache, and
   `bench.gpuloop.StaticGreedy` (bf16, static KV cache, one CUDA graph per step).
2. Throughput from JPEG bytes, greedy, 16 tokens: JPEGs decoded on the GPU with torchvision's nvJPEG
   when torchvision imports (PIL in a thread pool otherwise), resized and normalised on the device,
   captioned by StaticGreedy at a large batch; against plain HF from PIL images (ViTImageProcessor +
   generate, fp32, batch 32).
3. Fine-tuning throughput, data pipeline included: `bench.train` on the card (capbot train against
   plain Seq2SeqTrainer with bf16).

`--smoke` runs all three on the CPU with the tiny preset in seconds (the test suite does, so the script
cannot rot while no GPU is at hand) and checks StaticGreedy's tokens against the fast path's search.

    python -m bench.gpu            # on a CUDA machine
    python -m bench.gpu --smoke    # anywhere
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import machine, photo_jpegs, print_table, save

log = logging.getLogger("bench")
NEW_TOKENS = 16


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_s(fn, device, repeats: int) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def load(model_dir: Path, device, dtype):
    import torch
    from transformers import AutoTokenizer, VisionEncoderDecoderModel

    from inference.modeldir import set_token_ids

    model = VisionEncoderDecoderModel.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    set_token_ids(model, tokenizer)
    torch.backends.cuda.matmul.allow_tf32 = True
    return model, tokenizer


def static_greedy(model, batch: int):
    from bench.gpuloop import StaticGreedy

    gen = model.generation_config
    return StaticGreedy(model, batch, NEW_TOKENS, start_id=gen.decoder_start_token_id, eos_id=gen.eos_token_id,
                        pad_id=gen.pad_token_id)


def latency(model_dir: Path, device, fast_dtype, repeats: int) -> list[dict]:
    """Batch-1 greedy latency of plain HF fp32, HF with a static cache, and StaticGreedy."""
    import torch

    pixels = torch.randn(1, 3, *_image_size(model_dir), device=device)
    rows = []
    fp32, _ = load(model_dir, device, torch.float32)
    with torch.inference_mode():
        rows.append(("plain HF fp32 generate", _median_s(
            lambda: fp32.generate(pixels, max_new_tokens=NEW_TOKENS, do_sample=False), device, repeats)))
    del fp32
    fast, _ = load(model_dir, device, fast_dtype)
    with torch.inference_mode():
        rows.append((f"HF {str(fast_dtype)[6:]} generate, static cache", _median_s(
            lambda: fast.generate(pixels.to(fast_dtype), max_new_tokens=NEW_TOKENS, do_sample=False,
                                  cache_implementation="static"), device, repeats)))
    loop = static_greedy(fast, 1)
    rows.append((f"capbot StaticGreedy {str(fast_dtype)[6:]}" + (" + CUDA graph" if loop.use_cuda_graph else ""),
                 _median_s(lambda: loop.generate(pixels), device, repeats)))
    base = rows[0][1]
    return [{"path": name, "median_ms": round(s * 1000, 2), "speedup": round(base / s, 1)} for name, s in rows]


def decode_jpegs(jpegs: list[bytes], size: tuple[int, int], device, dtype):
    """JPEG bytes -> normalised (N, 3, H, W) on `device`: nvJPEG through torchvision when it imports, else PIL."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    try:
        from torchvision.io import decode_jpeg

        frames = decode_jpeg([torch.frombuffer(b, dtype=torch.uint8) for b in jpegs], device=device)
        decoder = "torchvision nvJPEG" if device.type == "cuda" else "torchvision"
        batch = [F.interpolate(f[None].float(), size=size, mode="bilinear", antialias=True) for f in frames]
        images = torch.cat(batch)
    except ImportError:
        from PIL import Image

        def one(data: bytes):
            image = Image.open(io.BytesIO(data))
            image.draft("RGB", size)
            return np.asarray(image.convert("RGB").resize(size[::-1], Image.BILINEAR))

        with ThreadPoolExecutor() as pool:
            arrays = list(pool.map(one, jpegs))
        decoder = "PIL (threads)"
        images = torch.from_numpy(np.stack(arrays)).to(device).permute(0, 3, 1, 2).float()
    return ((images / 255 - 0.5) / 0.5).to(dtype), decoder


def throughput(model_dir: Path, device, fast_dtype, batch: int, hf_batch: int, rounds: int) -> list[dict]:
    """Images/s from JPEG bytes: StaticGreedy after GPU decode, against plain HF from PIL images."""
    import torch
    from PIL import Image
    from transformers import ViTImageProcessor

    size = _image_size(model_dir)
    jpegs = photo_jpegs(batch)
    fast, _ = load(model_dir, device, fast_dtype)
    loop = static_greedy(fast, batch)
    decoder = ""

    def capbot_round() -> None:
        nonlocal decoder
        pixels, decoder = decode_jpegs(jpegs, size, device, fast_dtype)
        loop.generate(pixels).tolist()

    capbot_s = _median_s(capbot_round, device, rounds)
    del loop, fast
    fp32, tokenizer = load(model_dir, device, torch.float32)
    processor = ViTImageProcessor.from_pretrained(model_dir)
    hf_jpegs = jpegs[:hf_batch]

    def hf_round() -> None:
        images = [Image.open(io.BytesIO(b)).convert("RGB") for b in hf_jpegs]
        pixels = processor(images=images, return_tensors="pt").pixel_values.to(device)
        with torch.inference_mode():
            tokenizer.batch_decode(fp32.generate(pixels, max_new_tokens=NEW_TOKENS, do_sample=False))

    hf_s = _median_s(hf_round, device, rounds)
    hf_rate, capbot_rate = hf_batch / hf_s, batch / capbot_s
    return [{"path": f"plain HF fp32 from PIL, batch {hf_batch}", "images_per_s": round(hf_rate, 1), "speedup": 1.0},
            {"path": f"capbot {decoder} + StaticGreedy {str(fast_dtype)[6:]}, batch {batch}",
             "images_per_s": round(capbot_rate, 1), "speedup": round(capbot_rate / hf_rate, 1)}]


def check_tokens(model_dir: Path) -> bool:
    """StaticGreedy (eager, CPU, fp32) picks the tokens the fast path's search picks (no n-gram ban)."""
    import numpy as np
    import torch

    from inference.fast.graph import DecoderStep, EncoderGraph, empty_past
    from inference.generation import search_spec
    from inference.search import search
    from inference.types import GenerationOptions

    model, _ = load(model_dir, torch.device("cpu"), torch.float32)
    pixels = torch.randn(3, 3, *_image_size(model_dir), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        cross = EncoderGraph(model)(pixels)
    step, state = DecoderStep(model), {"past": empty_past(model.config, 3)}

    def run(tokens, origin):
        with torch.inference_mode():
            logprobs, *state["past"] = step(torch.from_numpy(tokens), *state["past"], *cross)
        return logprobs.numpy()

    spec = search_spec(GenerationOptions(max_new_tokens=NEW_TOKENS, no_repeat_ngram_size=0), model.generation_config)
    expected = search(run, 3, spec).sequences
    got = static_greedy(model, 3).generate(pixels).numpy()[:, :expected.shape[1]]
    return bool(np.array_equal(got, expected))


def _image_size(model_dir: Path) -> tuple[int, int]:
    from inference.pixels import PixelSpec

    spec = PixelSpec.from_dir(model_dir)
    return (spec.height, spec.width) if spec else (224, 224)


def run(smoke: bool, model_dir: Path | None) -> dict:
    import torch

    from bench import train as train_bench

    if smoke:
        device, dtype = torch.device("cpu"), torch.float32
        root = Path(tempfile.mkdtemp(prefix="capbot-gpu-smoke-"))
        _, model_dir = train_bench.prepare(root, "tiny", images=16)
        sizes = {"repeats": 1, "batch": 4, "hf_batch": 2, "rounds": 1, "train_steps": 1, "train_batch": 4}
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA GPU: run with --smoke, or on a GPU machine")
        device = torch.device("cuda")
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        root = Path("bench/.models")
        if model_dir is None:
            from bench.models import full_size_model

            model_dir = full_size_model(root / "full")
        sizes = {"repeats": 20, "batch": 256, "hf_batch": 32, "rounds": 5, "train_steps": 50, "train_batch": 128}
    card = torch.cuda.get_device_name() if device.type == "cuda" else "none (smoke run on the CPU)"
    payload = {"machine": {**machine(), "gpu": card}, "smoke": smoke, "model": str(model_dir),
               "tokens_match_search": check_tokens(model_dir),
               "latency_b1": latency(model_dir, device, dtype, sizes["repeats"]),
               "throughput": throughput(model_dir, device, dtype, sizes["batch"], sizes["hf_batch"], sizes["rounds"])}
    preset = "tiny" if smoke else "base"
    payload["training"] = train_bench.run(preset, sizes["train_steps"], sizes["train_batch"], device.type, 1,
                                          root / "train")["results"]
    return payload


def print_results(payload: dict) -> None:
    gpu = payload["machine"]["gpu"]
    print(f"\nStaticGreedy tokens equal the fast path's search: {payload['tokens_match_search']}")
    print_table(f"Batch-1 greedy latency, {NEW_TOKENS} tokens ({gpu})", ["path", "median ms", "speed-up"],
                [[r["path"], r["median_ms"], f'{r["speedup"]}x'] for r in payload["latency_b1"]])
    print_table(f"Throughput from JPEG bytes, greedy, {NEW_TOKENS} tokens ({gpu})", ["path", "images/s", "speed-up"],
                [[r["path"], r["images_per_s"], f'{r["speedup"]}x'] for r in payload["throughput"]])
    print_table(f"Fine-tuning, data pipeline included ({gpu})", ["path", "samples/s (best)", "vs plain"],
                [[r["path"], r["samples_per_s_best"], f'{r["speedup"]}x'] for r in payload["training"]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU, a few seconds")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default bench/results/gpu.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    payload = run(args.smoke, args.model_dir)
    print_results(payload)
    if args.out:
        args.out.write_text(__import__("json").dumps(payload, indent=2, default=str))
    else:
        print(f"\nwritten: {save('gpu-smoke' if args.smoke else 'gpu', payload)}")
    return 0 if payload["tokens_match_search"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
