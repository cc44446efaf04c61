"""`capbot train`, `capbot evaluate` and a retraining round through the gate for every non-ViT+GPT-2 family
(BLIP, GIT, Florence-2, SmolVLM), on tiny random models saved by plain transformers code (no capbot.json)."""

from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

from capbot.cli import main
from inference.families import family_of
from storage import db, registry, runs
from tests.specs import EXACT_GREEDY
from tests.training.retrain_support import add_feedback, config_for, open_store
from training.data.coco import load_split
from training.gate import decide_promotion
from training.retrain import default_trainer, retrain
from training.train import TrainArgs, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAMILIES = ("blip", "git", "florence2", "smolvlm")


def _cli(args: list[str]) -> tuple[int, str]:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main(args)
    return code, buffer.getvalue()


@pytest.fixture(scope="module", params=FAMILIES)
def trained(request, family_model_dirs, synthetic_dataset, tmp_path_factory):
    """One short `capbot train --model DIR` run per family, against a new SQLite database."""
    family = request.param
    root = tmp_path_factory.mktemp(f"train_{family}")
    db_url = f"sqlite:///{root / 'capbot.db'}"
    out = root / "models" / family
    monkey = pytest.MonkeyPatch()
    monkey.setenv("CAPBOT_DATABASE_URL", db_url)
    monkey.setenv("CAPBOT_DATA_DIR", str(root))
    code, stdout = _cli(["train", "--model", str(family_model_dirs[family]), "--data", str(synthetic_dataset.out_dir),
                         "--out", str(out), "--steps", "4", "--batch-size", "8", "--warmup-steps", "1",
                         "--eval-every", "4", "--eval-limit", "4", "--no-tensorboard", "--json"])
    monkey.undo()
    return family, code, stdout, out, db_url


def test_capbot_train_saves_a_candidate_that_loads_as_plain_transformers_and_through_capbot(trained, synthetic_dataset):
    family, code, stdout, out, db_url = trained
    assert code == 0, stdout
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["steps"] == 4 and result["registered"] is True and math.isfinite(result["final_loss"])
    assert set(result["metrics"]) >= {"bleu_4", "cider", "rouge_l"}
    meta = json.loads((out / "capbot.json").read_text())
    assert meta["version"] == result["version"] and meta["parent_version"] is None  # the source had no capbot.json
    engine = db.create_engine_for(db_url)
    with db.session_scope(engine) as session:
        assert registry.get_version(session, result["version"]).status == "candidate"
    engine.dispose()
    # Plain transformers, as the family's model card loads it.
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from tests.families import model_card_captions

    plain = AutoModelForImageTextToText.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    image = load_split(synthetic_dataset.out_dir, "val").items[0].path
    from PIL import Image

    with Image.open(image) as opened:
        card = model_card_captions(family, plain, processor, [opened.convert("RGB")], max_new_tokens=8)
    # capbot: the family is read from the directory and it captions as serving does, with the same weights.
    from inference.captioner import LocalCaptioner
    from inference.types import GenerationOptions

    assert family_of(out) == family
    captioner = LocalCaptioner(out, EXACT_GREEDY)
    try:
        served = captioner.caption([image.read_bytes()], GenerationOptions(max_new_tokens=8, no_repeat_ngram_size=0))
    finally:
        captioner.close()
    assert served[0].model_version == result["version"] and served[0].text == card[0]


def test_capbot_evaluate_scores_the_trained_model(trained, synthetic_dataset):
    family, code, _, out, _ = trained
    assert code == 0
    code, stdout = _cli(["evaluate", "--model", str(out), "--data", str(synthetic_dataset.out_dir), "--split", "val",
                         "--limit", "4", "--no-meteor", "--json"])
    assert code == 0, stdout
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["n_images"] == 4 and report["model_version"] == json.loads((out / "capbot.json").read_text())["version"]
    assert all(math.isfinite(v) for v in report["metrics"].values() if v is not None)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_loss_falls_on_a_fixed_batch(family, family_model_dirs, synthetic_dataset, tmp_path):
    """Six steps on the same eight examples: the loss is finite and lower at the end than at the start."""
    pairs = [(item.path, item.captions[0]) for item in load_split(synthetic_dataset.out_dir, "train").items[:8]]
    result = train(TrainArgs(model=str(family_model_dirs[family]), train_pairs=pairs, val_split=None,
                             out=tmp_path / "out", run_dir=tmp_path / "run", steps=6, batch_size=8, lr=1e-3,
                             warmup_steps=0, log_every=1, tensorboard=False, seed=0))
    losses = [loss for _, loss in result.losses]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0] - 0.1, losses
    assert family_of(result.model_dir) == family


@pytest.mark.parametrize("family", FAMILIES)
def test_a_retraining_round_goes_through_the_gate(family, family_model_dirs, synthetic_dataset, feedback_images, tmp_path):
    """Real fine-tuning and real captioning (serving's captioner spec) of a family model: the run promotes or
    refuses exactly as the gate's rule says on its own scores, and a promotion can be rolled back to the base."""
    base = family_model_dirs[family]
    engine, blobs = open_store(f"sqlite:///{tmp_path / 'c.db'}", tmp_path)
    add_feedback(engine, blobs, feedback_images)
    config = config_for(engine, blobs, tmp_path, base, synthetic_dataset.out_dir, learning_rate=1e-3, epochs=2,
                        cider_tolerance=0.5, base_eval_limit=6)
    result = retrain(config, trainer=default_trainer)
    assert result.status in ("promoted", "not_promoted"), result.message
    decision = decide_promotion(result.metrics, cider_tolerance=config.cider_tolerance,
                                min_feedback_gain=config.min_feedback_gain)
    assert (result.status == "promoted") == decision.promote and result.message == decision.reason
    with db.session_scope(engine) as session:
        candidate = registry.get_version(session, result.candidate_version)
        run = runs.get_run(session, result.run_id)
        assert run.status == result.status and candidate.metrics["gate"]["promote"] == decision.promote
    assert family_of(Path(candidate.location)) == family
    if decision.promote:
        with db.session_scope(engine) as session:
            assert registry.get_active(session).id == result.candidate_version
            restored = registry.rollback(session)
        assert restored.location == str(base)
        with db.session_scope(engine) as session:
            assert registry.get_active(session).location == str(base)
    else:
        with db.session_scope(engine) as session:
            assert registry.get_active(session) is None  # the base model goes on serving
    engine.dispose()


def _run_args(model, data, run, **overrides) -> TrainArgs:
    base = dict(model=str(model), data=str(data), out=run / "model", run_dir=run, steps=4, batch_size=4, warmup_steps=1,
                lr=2e-3, val_split=None, log_every=1, tensorboard=False, progress=False, keep_checkpoints=5)
    return TrainArgs(**{**base, **overrides})


def _state(model_dir, family, part: str = ""):
    from inference.family_models import load_model

    model = load_model(model_dir, family)
    return (model.get_submodule(part) if part else model).state_dict()


@pytest.mark.parametrize("family", FAMILIES)
def test_a_split_run_resumes_to_identical_weights(family, family_model_dirs, synthetic_dataset, tmp_path):
    model, data = family_model_dirs[family], synthetic_dataset.out_dir
    straight = train(_run_args(model, data, tmp_path / "straight", steps=4))
    first = train(_run_args(model, data, tmp_path / "split", steps=4, stop_at=2))
    assert first.model_dir is None
    second = train(_run_args(model, data, tmp_path / "split", steps=4, resume=True))
    assert second.resumed_from == 2 and dict(first.losses) | dict(second.losses) == dict(straight.losses)
    a, b = _state(straight.model_dir, family), _state(second.model_dir, family)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("family", FAMILIES)
def test_freeze_encoder_keeps_the_vision_tower(family, family_model_dirs, synthetic_dataset, tmp_path):
    from training.train import _VISION_TOWERS

    model = family_model_dirs[family]
    result = train(_run_args(model, synthetic_dataset.out_dir, tmp_path / "run", steps=2, freeze_encoder=True))
    tower = _VISION_TOWERS[family]
    before, after = _state(model, family, tower), _state(result.model_dir, family, tower)
    assert before and all(torch.equal(before[k], after[k]) for k in before)
    whole_before, whole_after = _state(model, family), _state(result.model_dir, family)
    assert any(not torch.equal(whole_before[k], whole_after[k]) for k in whole_before)  # the text side learned


@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_checkpointing_trains_the_same_and_saves_serving_config(family, family_model_dirs, synthetic_dataset,
                                                                         tmp_path):
    model, data = family_model_dirs[family], synthetic_dataset.out_dir
    plain = train(_run_args(model, data, tmp_path / "plain", steps=2))
    checkpointed = train(_run_args(model, data, tmp_path / "gc", steps=2, gradient_checkpointing=True))
    assert [x for _, x in checkpointed.losses] == pytest.approx([x for _, x in plain.losses], rel=1e-4)
    from inference.family_models import load_model

    assert load_model(checkpointed.model_dir, family).config.get_text_config().use_cache is True
