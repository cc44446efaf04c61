"""Data-parallel training through torchrun: two CPU processes with the gloo backend, the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from training.checkpoint import latest_checkpoint, load_checkpoint


def test_torchrun_two_processes_share_the_work_and_only_rank_0_writes(tiny_model_dir, synthetic_dataset, tmp_path):
    out, run_dir = tmp_path / "model", tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "capbot", "train", "--model", str(tiny_model_dir), "--data", str(synthetic_dataset.out_dir),
        "--out", str(out), "--run-dir", str(run_dir), "--steps", "4", "--batch-size", "4", "--warmup-steps", "1", "--eval-limit", "4",
        "--no-register", "--json",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CAPBOT_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    # Rank 0 alone prints the result, writes the model, the checkpoint and the TensorBoard log.
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 1 and results[0]["steps"] == 4
    assert results[0]["metrics"]["n_images"] == 4  # evaluated once, at the end
    assert (out / "capbot.json").is_file() and len(list((run_dir / "tb").iterdir())) == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["LATEST", "step-0000004"]
    # Both ranks trained: every process's RNG state was gathered, and twice the samples were seen.
    ckpt = load_checkpoint(latest_checkpoint(run_dir))
    assert len(ckpt.rng) == 2 and ckpt.position.samples_seen == 4 * 4 * 2
    assert not torch.equal(ckpt.rng[0]["torch"], ckpt.rng[1]["torch"])  # each rank draws its own dropout
