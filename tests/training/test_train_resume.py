"""Checkpoints resume exactly; the encoder can be frozen; gradient checkpointing changes nothing but memory."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import VisionEncoderDecoderModel

from training.checkpoint import latest_checkpoint, load_checkpoint
from training.train import TrainArgs, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _args(model, data, run, **overrides) -> TrainArgs:
    """A short run with its checkpoints in `run` and its model in `run/model`."""
    base = dict(model=str(model), data=str(data), out=run / "model", run_dir=run, steps=6, batch_size=4, warmup_steps=2, lr=2e-3,
                val_split=None, log_every=1, tensorboard=False, progress=False, keep_checkpoints=5)
    return TrainArgs(**{**base, **overrides})


def _weights(model_dir):
    return load_file(str(model_dir / "model.safetensors"))


@pytest.fixture(scope="module")
def dropout_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with decoder dropout on, so a resumed run must also restore the RNG to match."""
    out = tmp_path_factory.mktemp("dropout") / "model"
    shutil.copytree(tiny_model_dir, out)
    config = json.loads((out / "config.json").read_text())
    config["decoder"].update(resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)
    (out / "config.json").write_text(json.dumps(config))
    return out


def test_split_run_resumes_to_identical_weights_and_losses(dropout_model_dir, synthetic_dataset, tmp_path):
    model, data = dropout_model_dir, synthetic_dataset.out_dir
    # 40 training images / batch 4 = 10 batches an epoch: a stop at step 6 is mid-epoch 1 with accumulation 2.
    straight = train(_args(model, data, tmp_path / "straight", steps=12, grad_accum=2))
    first = train(_args(model, data, tmp_path / "split", steps=12, grad_accum=2, stop_at=6))
    assert first.steps == 6 and first.model_dir is None  # not finished: no model yet
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "split"))
    assert (ckpt.position.step, ckpt.position.epoch, ckpt.position.batch_in_epoch) == (6, 1, 2)
    assert ckpt.position.samples_seen == 6 * 2 * 4
    second = train(_args(model, data, tmp_path / "split", steps=12, grad_accum=2, resume=True))
    assert second.resumed_from == 6 and second.steps == 12
    # Identical losses step by step, and bit-identical weights at the end.
    assert dict(first.losses) | dict(second.losses) == dict(straight.losses)
    a, b = _weights(straight.model_dir), _weights(second.model_dir)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Training changed the weights it started from.
    start = _weights(model)
    assert sum(not torch.equal(a[k], start[k]) for k in a) > len(a) // 2


@pytest.fixture(scope="module")
def plain_run(tiny_model_dir, synthetic_dataset, tmp_path_factory):
    """4 steps with a checkpoint after each, keeping two."""
    out = tmp_path_factory.mktemp("plain") / "run"
    return out, train(_args(tiny_model_dir, synthetic_dataset.out_dir, out, steps=4, save_every=1, keep_checkpoints=2))


def test_checkpoint_layout_and_pruning(plain_run, tiny_model_dir):
    out, result = plain_run
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["LATEST", "step-0000003", "step-0000004"]
    assert (out / "checkpoints" / "LATEST").read_text().strip() == "step-0000004"
    assert {"config.json", "model.safetensors"} <= {p.name for p in (out / "checkpoints" / "step-0000004" / "model").iterdir()}
    # The final model is a self-describing model directory with its lineage and training facts.
    meta = json.loads((result.model_dir / "capbot.json").read_text())
    parent = json.loads((tiny_model_dir / "capbot.json").read_text())["version"]
    assert meta["version"] == result.version and meta["parent_version"] == parent
    assert meta["made_by"] == "train" and meta["extra"]["step"] == 4 and meta["extra"]["train_args"]["steps"] == 4
    assert {"tokenizer.json", "preprocessor_config.json", "generation_config.json"} <= {p.name for p in result.model_dir.iterdir()}
    # Every weight the config describes is saved (nothing "newly initialized" on load); the unused pooler is unchanged.
    _, info = VisionEncoderDecoderModel.from_pretrained(result.model_dir, output_loading_info=True)
    assert info["missing_keys"] in ([], set()) and info["unexpected_keys"] in ([], set())
    before, after = _weights(tiny_model_dir), _weights(result.model_dir)
    pooler = [k for k in before if ".pooler." in k]
    assert pooler and all(torch.equal(before[k], after[k]) for k in pooler)


def test_frozen_encoder_keeps_encoder_weights(tiny_model_dir, synthetic_dataset, tmp_path):
    result = train(_args(tiny_model_dir, synthetic_dataset.out_dir, tmp_path / "run", steps=3, freeze_encoder=True))
    before, after = _weights(tiny_model_dir), _weights(result.model_dir)
    encoder = [k for k in after if k.startswith("encoder.")]
    decoder = [k for k in after if k.startswith("decoder.")]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)
    assert any(not torch.equal(before[k], after[k]) for k in decoder)


def test_gradient_checkpointing_gives_the_same_training(plain_run, tiny_model_dir, synthetic_dataset, tmp_path):
    _, plain = plain_run
    ckpt = train(_args(tiny_model_dir, synthetic_dataset.out_dir, tmp_path / "gc", steps=4, gradient_checkpointing=True))
    assert [l for _, l in ckpt.losses] == pytest.approx([l for _, l in plain.losses], rel=1e-4)
    a, b = _weights(plain.model_dir), _weights(ckpt.model_dir)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert json.loads((ckpt.model_dir / "config.json").read_text())["decoder"].get("use_cache", True) is True


def test_epochs_set_the_step_count(tiny_model_dir, synthetic_dataset, tmp_path):
    # 40 training images, 8 per step: one epoch is 5 steps. Asked to resume, a new run starts fresh.
    result = train(_args(tiny_model_dir, synthetic_dataset.out_dir, tmp_path / "run", epochs=1, batch_size=8,
                         out=tmp_path / "candidate", resume=True))
    assert result.steps == 5 and result.model_dir == tmp_path / "candidate" and result.resumed_from is None
    assert (tmp_path / "candidate" / "capbot.json").is_file() and not (tmp_path / "run" / "model").exists()


def test_a_resumed_run_keeps_its_evaluations_and_its_best_model(tiny_model_dir, synthetic_dataset, tmp_path):
    from inference.modeldir import load_metadata

    common = dict(steps=4, eval_every=2, val_split="val", eval_limit=4)
    first = train(_args(tiny_model_dir, synthetic_dataset.out_dir, tmp_path / "run", stop_at=2, **common))
    assert first.model_dir is None and [e.step for e in first.history] == [2] and first.saved.step == 2
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "run"))
    assert ckpt.saved == first.saved and ckpt.history == first.history  # typed state survives the file
    assert ckpt.saved.evaluation.n_images == 4 and "cider" in ckpt.saved.evaluation.scores
    second = train(_args(tiny_model_dir, synthetic_dataset.out_dir, tmp_path / "run", resume=True, **common))
    assert second.resumed_from == 2 and [e.step for e in second.history] == [2, 4]
    best = max(second.history, key=lambda e: e.cider)  # the first of equals, as training keeps only a better one
    assert second.saved.evaluation == best and second.best_step == best.step
    assert second.metrics == {**best.scores, "n_images": 4}
    assert load_metadata(second.model_dir).version == second.version


def test_a_new_run_never_replaces_an_existing_directory(tiny_model_dir, synthetic_dataset, tmp_path):
    from storage.errors import UserError

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"not yours to delete")
    for resume in (False, True):
        with pytest.raises(UserError, match="already exists"):
            train(_args(tiny_model_dir, synthetic_dataset.out_dir, tmp_path / "run", out=photos, resume=resume))
    assert [p.name for p in photos.iterdir()] == ["cat.jpg"]
