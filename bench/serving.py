"""`capbot run` under a burst, through its HTTP API, and the memory it keeps, against plain HF's process.

1. Starts `capbot run` (fast mode, the full-size model, rate limit raised) on a free port.
2. Sends the same 32 JPEGs as `POST /api/captions` (multipart `file`) one at a time, then all 32 at once,
   interleaved over repeats; reports images/s and per-request p50/p95 latency of each.
3. Reads the server's resident memory (now and peak) after the burst, and that of a plain Hugging Face
   fp32 process (ViTImageProcessor + generate) that loaded the same model and captioned 8 of the images.

    python -m bench.serving [--repeats 2] [--requests 32]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import machine, photo_jpegs, print_table, rss_mb, save, summary
from bench.models import full_size_model

log = logging.getLogger("bench")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_dir: Path, data_dir: Path, port: int, extra_env: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CAPBOT_MODEL": str(model_dir), "CAPBOT_DATA_DIR": str(data_dir),
           "CAPBOT_PORT": str(port), "CAPBOT_DEVICE": "cpu", "CAPBOT_RATE_LIMIT_PER_MINUTE": "100000",
           "CAPBOT_QUEUE_SIZE": "256", "CAPBOT_MAX_NEW_TOKENS": "16", "CAPBOT_NO_REPEAT_NGRAM_SIZE": "0",
           "CAPBOT_LOG_LEVEL": "WARNING", **extra_env}
    for name in ("CAPBOT_SLACK_BOT_TOKEN", "CAPBOT_DISCORD_TOKEN", "CAPBOT_RETRAIN_CRON"):
        env.pop(name, None)
    server = subprocess.Popen([sys.executable, "-m", "capbot", "run"], env=env, cwd=data_dir,
                              stdout=subprocess.DEVNULL, stderr=open(data_dir / "server.log", "w"))
    _wait_healthy(server, port)
    return server


def _wait_healthy(server: subprocess.Popen, port: int, timeout_s: float = 900) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"capbot run exited with {server.returncode}; see its server.log")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError("capbot run did not become healthy in time")


async def _post(client, jpeg: bytes) -> float:
    started = time.perf_counter()
    reply = await client.post("/api/captions", files={"file": ("photo.jpg", jpeg, "image/jpeg")})
    reply.raise_for_status()
    return time.perf_counter() - started


async def one_at_a_time(port: int, jpegs: list[bytes]) -> tuple[float, list[float]]:
    import httpx

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
        started = time.perf_counter()
        latencies = [await _post(client, jpeg) for jpeg in jpegs]
        return time.perf_counter() - started, latencies


async def all_at_once(port: int, jpegs: list[bytes]) -> tuple[float, list[float]]:
    import httpx

    limits = httpx.Limits(max_connections=len(jpegs))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600, limits=limits) as client:
        started = time.perf_counter()
        latencies = await asyncio.gather(*(_post(client, jpeg) for jpeg in jpegs))
        return time.perf_counter() - started, list(latencies)


def plain_hf_memory(model_dir: Path, images: int = 8) -> dict[str, float]:
    """Resident memory of a process doing what the model card does, after captioning `images` photos."""
    code = (
        "import io, sys, json, torch\n"
        "from PIL import Image\n"
        "from transformers import AutoTokenizer, ViTImageProcessor, VisionEncoderDecoderModel\n"
        "from bench.common import photo_jpegs, rss_mb\n"
        f"model = VisionEncoderDecoderModel.from_pretrained({str(model_dir)!r}).eval()\n"
        f"processor = ViTImageProcessor.from_pretrained({str(model_dir)!r})\n"
        f"tokenizer = AutoTokenizer.from_pretrained({str(model_dir)!r})\n"
        f"images = [Image.open(io.BytesIO(b)).convert('RGB') for b in photo_jpegs({images})]\n"
        "with torch.no_grad():\n"
        "    ids = model.generate(processor(images=images, return_tensors='pt').pixel_values, max_new_tokens=16)\n"
        "tokenizer.batch_decode(ids, skip_special_tokens=True)\n"
        "print(json.dumps(rss_mb()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    import json

    return json.loads(done.stdout.strip().splitlines()[-1])


def run(model_dir: Path, repeats: int, requests: int, env: dict[str, str]) -> dict:
    jpegs = photo_jpegs(requests)
    with tempfile.TemporaryDirectory(prefix="capbot-bench-") as tmp:
        port = free_port()
        server = start_server(model_dir, Path(tmp), port, env)
        try:
            asyncio.run(one_at_a_time(port, jpegs[:2]))  # warm-up
            asyncio.run(all_at_once(port, jpegs[:8]))
            runs: dict[str, list[tuple[float, list[float]]]] = {"one at a time": [], "all at once": []}
            for repeat in range(repeats):
                runs["one at a time"].append(asyncio.run(one_at_a_time(port, jpegs)))
                runs["all at once"].append(asyncio.run(all_at_once(port, jpegs)))
                log.info("repeat done", extra={"repeat": repeat + 1})
            server_memory = rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(60)
    rows = []
    for name, measured in runs.items():
        walls = [wall for wall, _ in measured]
        latencies = [lat for _, lats in measured for lat in lats]
        best = min(walls)
        rows.append({"mode": name, "requests": requests, "images_per_s_best": round(requests / best, 2),
                     "images_per_s_median": round(requests / sorted(walls)[len(walls) // 2], 2),
                     "latency": summary(latencies)})
    rows[1]["throughput_vs_one_at_a_time"] = round(rows[1]["images_per_s_best"] / rows[0]["images_per_s_best"], 2)
    hf_memory = plain_hf_memory(model_dir)
    return {"machine": machine(), "server_env": env, "repeats": repeats, "results": rows,
            "memory": {"capbot run (fast)": server_memory, "plain HF fp32": hf_memory,
                       "rss_ratio": round(server_memory["rss_mb"] / hf_memory["rss_mb"], 2),
                       "peak_ratio": round(server_memory["peak_rss_mb"] / hf_memory["peak_rss_mb"], 2)}}


def print_results(payload: dict) -> None:
    rows = [[r["mode"], r["requests"], r["images_per_s_best"], r["images_per_s_median"], r["latency"]["median_ms"],
             r["latency"]["p95_ms"], r.get("throughput_vs_one_at_a_time", "")] for r in payload["results"]]
    print_table("capbot run, POST /api/captions, fast mode, full-size model",
                ["requests", "count", "images/s (best)", "images/s (median)", "p50 ms", "p95 ms", "throughput gain"], rows)
    memory = payload["memory"]
    print_table("Resident memory (MiB)", ["process", "RSS", "peak RSS"],
                [[name, round(m["rss_mb"]), round(m["peak_rss_mb"])] for name, m in memory.items() if isinstance(m, dict)]
                + [["capbot / HF", memory["rss_ratio"], memory["peak_ratio"]]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--model-dir", type=Path, default=Path("bench/.models/full"))
    parser.add_argument("--env", action="append", default=[], help="extra server setting, e.g. CAPBOT_THREADS=1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    env = {"CAPBOT_WORKERS": "32"}  # otherwise the shipped defaults (batch 8, 10 ms wait, auto threads)
    env.update(item.split("=", 1) for item in args.env)
    payload = run(full_size_model(args.model_dir).resolve(), args.repeats, args.requests, env)
    print_results(payload)
    print(f"\nwritten: {save('serving', payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
