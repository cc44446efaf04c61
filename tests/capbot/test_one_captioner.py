"""One captioner spec, built once from settings: the web API, `capbot caption` and the retraining gate caption an
image the same way, so the gate's promotion decision is about the captions users are served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import skimage
from fastapi.testclient import TestClient

from capbot.app import build_services, build_web_app
from capbot.captioning import captioner_spec
from capbot.cli import main
from capbot.app import retrain_config
from capbot.settings import get_settings
from inference.spec import SERVED_OPTIONS, CaptionerSpec
from training.data.coco import load_split
from training.retrain import default_captioner_factory

PHOTOS = [Path(skimage.__file__).parent / "data" / name for name in ("chelsea.png", "rocket.jpg", "coffee.png")]


@pytest.fixture
def settings_env(tmp_path, tiny_model_dir, monkeypatch):
    """CAPBOT_* as an operator sets them: the tiny model on the CPU, every other setting at its default."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAPBOT_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("CAPBOT_DEVICE", "cpu")
    monkeypatch.setenv("CAPBOT_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def services(settings_env):
    built = build_services(get_settings())
    yield built
    built.close()


def test_default_settings_give_the_default_spec(tmp_path):
    spec = captioner_spec(get_settings(data_dir=tmp_path))
    assert spec == CaptionerSpec() and spec.options == SERVED_OPTIONS
    assert (spec.options.num_beams, spec.options.num_alternatives, spec.precision) == (3, 2, "auto")
    assert spec.cache_dir == tmp_path / "cache" / "fast"


def test_capbot_caption_and_the_web_api_give_the_same_caption_by_default(settings_env, capsys):
    assert main(["caption", *map(str, PHOTOS), "--json"]) == 0
    from_cli = [json.loads(line)["caption"] for line in capsys.readouterr().out.splitlines()]
    services = build_services(get_settings())
    try:
        client = TestClient(build_web_app(services), client=("10.0.0.1", 50000))
        answers = [client.post("/v1/captions", files={"file": (p.name, p.read_bytes())}) for p in PHOTOS]
    finally:
        services.close()
    assert [a.status_code for a in answers] == [201] * len(PHOTOS)
    assert from_cli == [a.json()["text"] for a in answers]


def test_the_gate_scores_the_captions_users_are_served(services, synthetic_dataset, tiny_model_dir):
    config = retrain_config(services.settings, services.engine)  # as `capbot retrain` and its schedule build it
    assert config.captioner == services.spec and services.core.options == services.spec.options
    images = [item.path.read_bytes() for item in load_split(synthetic_dataset.out_dir, "test").items]
    gate = default_captioner_factory(config)(str(tiny_model_dir))
    try:
        assert gate.spec == services.spec.scoring()  # the one deliberate difference: no alternatives, no views
        assert type(gate.engine) is type(services.captioner.engine)  # the served engine (on a CPU: int8)
        scored = [c.text for c in gate.caption(images)]  # the gate's evaluation passes no options of its own
    finally:
        gate.close()
    served = [c.text for c in services.captioner.caption(images, services.core.options)]
    assert scored == served
