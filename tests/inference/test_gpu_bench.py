"""`bench.gpu` in its CPU smoke mode: the GPU benchmark script runs end to end while no GPU is at hand,
and its static-cache decode loop picks the fast path's tokens."""

from __future__ import annotations

import json

from bench import gpu


def test_gpu_benchmark_smoke_mode_runs_and_its_loop_picks_the_searched_tokens(tmp_path):
    out = tmp_path / "gpu.json"
    assert gpu.main(["--smoke", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["smoke"] and payload["tokens_match_search"]
    assert [r["path"].split()[0] for r in payload["latency_b1"]] == ["plain", "HF", "capbot"]
    assert all(r["median_ms"] > 0 for r in payload["latency_b1"])
    assert all(r["images_per_s"] > 0 for r in payload["throughput"])
    assert {r["path"] for r in payload["training"]} == {"plain Seq2SeqTrainer", "capbot train"}
