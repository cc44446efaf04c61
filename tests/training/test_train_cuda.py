"""Training on a CUDA GPU: bf16 autocast by default, fp32 master weights, and checkpoints that resume the
GPU's RNG (dropout) where they left off.

Skipped without a GPU (CI has none); run on a GPU machine with `pytest -m gpu` (docs/DEVELOPING.md).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from inference.captioner import LocalCaptioner
from tests.specs import EXACT_GREEDY
from training.checkpoint import latest_checkpoint, load_checkpoint
from training.train import TrainArgs, train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _args(model, data, run, **overrides) -> TrainArgs:
    base = dict(model=str(model), data=str(data), out=run / "model", run_dir=run, steps=30, batch_size=8, warmup_steps=3, lr=2e-3,
                val_split=None, log_every=1, tensorboard=False, progress=False, device="auto")
    return TrainArgs(**{**base, **overrides})


def test_gpu_training_runs_in_bf16_keeps_fp32_weights_and_learns(tiny_model_dir, synthetic_dataset, tmp_path):
    result = train(_args(tiny_model_dir, synthetic_dataset.out_dir, tmp_path / "run"))
    assert result.device == "cuda:0" and result.precision == "bf16"
    losses = [loss for _, loss in result.losses]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses
    weights = load_file(str(result.model_dir / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float32}  # autocast computes in bf16, stores fp32
    captioner = LocalCaptioner(result.model_dir, EXACT_GREEDY)  # a GPU-trained model serves anywhere
    try:
        png = next((synthetic_dataset.out_dir / "test").glob("*.png")).read_bytes()
        assert captioner.caption([png])[0].text
    finally:
        captioner.close()


def test_gpu_checkpoints_restore_the_cuda_rng(tiny_model_dir, synthetic_dataset, tmp_path, exact_cuda_math):
    model = tmp_path / "dropout"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    config["decoder"].update(resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)
    (model / "config.json").write_text(json.dumps(config))
    data = synthetic_dataset.out_dir
    common = dict(steps=12, precision="fp32")
    straight = train(_args(model, data, tmp_path / "straight", **common))
    train(_args(model, data, tmp_path / "split", stop_at=6, **common))
    assert "cuda" in load_checkpoint(latest_checkpoint(tmp_path / "split")).rng[0]
    second = train(_args(model, data, tmp_path / "split", resume=True, **common))
    assert second.resumed_from == 6
    # GPU kernels may sum in another order (not bit-exact), but a dropout mask drawn from the wrong RNG
    # state moves the loss by percents, not by parts per million.
    resumed = dict(second.losses)
    assert [resumed[s] for s in range(7, 13)] == pytest.approx([dict(straight.losses)[s] for s in range(7, 13)], rel=1e-4)
