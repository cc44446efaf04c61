"""The default hub model's file set (`tests/inference/hub_files.py`) loads and captions as its card uses it:
no transformers warnings, no hub traffic from a cached copy, no legacy generation length saved downstream."""

from __future__ import annotations

import json
import logging
import re
import threading
import warnings
from pathlib import Path

import pytest
import skimage

from capbot.cli import main
from tests.fakes.http_files import FileServer
from tests.inference.hub_files import FILES, HUB_ID, as_hub_cache, build_hub_files

PHOTO = Path(skimage.__file__).parent / "data" / "chelsea.png"


@pytest.fixture(scope="session")
def hub_files(tmp_path_factory) -> Path:
    """The hub repository's file set, small and random (built once: ~5 s)."""
    return build_hub_files(tmp_path_factory.mktemp("vit-gpt2-hub") / "files")


@pytest.fixture
def hub_cache(tmp_path, hub_files, monkeypatch) -> Path:
    """The file set as a cached download of its hub id (HF_HUB_OFFLINE is set for the whole test session)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    snapshot = as_hub_cache(hub_files, cache)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return snapshot


def test_the_rebuilt_file_set_is_the_hub_repositorys(hub_files):
    assert sorted(p.name for p in hub_files.iterdir()) == sorted(FILES)
    config = json.loads((hub_files / "config.json").read_text())
    assert config["decoder"]["max_length"] == 20 and config["pad_token_id"] == config["eos_token_id"] == 50256
    import torch

    state = torch.load(hub_files / "pytorch_model.bin", weights_only=True)
    assert "decoder.transformer.h.0.attn.masked_bias" in state and "decoder.transformer.h.0.crossattention.bias" in state


@pytest.mark.parametrize("precision", ["exact", "fast"])
def test_the_hub_model_captions_by_its_hub_id_without_transformers_warnings(hub_cache, precision, capsys, caplog,
                                                                            monkeypatch):
    monkeypatch.setenv("CAPBOT_PRECISION", precision)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["caption", str(PHOTO), "--model", HUB_ID, "--device", "cpu", "--json", "--max-new-tokens", "6"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["model_version"] == HUB_ID
    assert transformers_warnings(caplog) == []
    assert [str(w.message) for w in caught if "transformers" in w.filename] == []


def transformers_warnings(caplog) -> list[str]:
    """What transformers logged at WARNING or above (its load report, generate's complaints)."""
    return [record.getMessage() for record in caplog.records
            if record.name.startswith("transformers") and record.levelno >= logging.WARNING]


def test_a_cached_hub_model_loads_without_asking_the_hub_for_a_safetensors_conversion(hub_cache, monkeypatch, capfd):
    """Online, transformers 5 starts a background thread that asks the hub to convert a .bin-only repository
    (and downloads the 982 MB result); a cached model must load with no hub traffic at all."""
    from huggingface_hub import constants

    with FileServer() as hub:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", hub.base_url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.base_url + "/{repo_id}/resolve/{revision}/{filename}")
        for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("CAPBOT_PRECISION", "exact")
        assert main(["caption", str(PHOTO), "--model", HUB_ID, "--device", "cpu", "--max-new-tokens", "4"]) == 0
        for thread in threading.enumerate():
            if "auto_conversion" in thread.name:
                thread.join(timeout=30)
        assert [(seen.method, seen.path) for seen in hub.requests] == []


def test_fine_tuning_the_hub_model_saves_no_legacy_generation_length(hub_cache, synthetic_dataset, tmp_path, caplog,
                                                                     monkeypatch, capsys):
    """transformers 4.11 wrote its default `max_length: 20` into the decoder's config; capbot sets the length with
    max_new_tokens, so a model it saves must not carry that 20 into generation_config.json (every later generate
    would warn, and a plain transformers user of the saved model would get 20-token captions)."""
    monkeypatch.setenv("CAPBOT_DATA_DIR", str(tmp_path))
    out = tmp_path / "tuned"
    assert main(["train", "--model", HUB_ID, "--data", str(synthetic_dataset.out_dir), "--out", str(out), "--steps", "1",
                 "--batch-size", "2", "--val-split", "none", "--no-register", "--no-tensorboard", "--json"]) == 0, \
        capsys.readouterr().err
    generation = json.loads((out / "generation_config.json").read_text())
    assert "max_length" not in generation
    assert generation["decoder_start_token_id"] == generation["eos_token_id"] == generation["pad_token_id"] == 50256
    assert transformers_warnings(caplog) == []


def _caption(model: str, capsys) -> str:
    assert main(["caption", str(PHOTO), "--model", model, "--device", "cpu", "--json", "--max-new-tokens", "6"]) == 0
    return json.loads(capsys.readouterr().out)["caption"]


def test_models_import_registers_the_hub_model_as_a_local_version(hub_cache, tmp_path, monkeypatch, capsys, caplog):
    from safetensors import safe_open

    from inference.modeldir import load_metadata

    monkeypatch.setenv("CAPBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CAPBOT_PRECISION", "exact")
    assert main(["models", "import", HUB_ID]) == 0
    version = re.search(r"as version (\S+) in (\S+) \(a candidate", capsys.readouterr().out).group(1)
    model_dir = tmp_path / "data" / "models" / version
    meta = load_metadata(model_dir)
    assert (meta.version, meta.made_by, meta.base) == (version, "import", HUB_ID)
    assert (model_dir / "model.safetensors").is_file() and not (model_dir / "pytorch_model.bin").exists()
    with safe_open(model_dir / "model.safetensors", "pt") as weights:
        assert not [name for name in weights.keys() if name.endswith("bias") and ".attn.bias" in name or "masked" in name]
    assert "max_length" not in json.loads((model_dir / "generation_config.json").read_text())
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(v["id"], v["status"], v["location"]) for v in listed] == [(version, "candidate", str(model_dir))]
    assert _caption(str(model_dir), capsys) == _caption(HUB_ID, capsys)  # the same model, now a local version
    assert transformers_warnings(caplog) == []


def test_models_import_takes_a_directory_saved_by_transformers_and_can_activate_it(hub_files, tmp_path, monkeypatch,
                                                                                  capsys):
    monkeypatch.setenv("CAPBOT_DATA_DIR", str(tmp_path / "data"))
    assert main(["models", "import", str(hub_files), "--activate"]) == 0
    version = re.search(r"as version (\S+) in \S+ \(active\)", capsys.readouterr().out).group(1)
    assert main(["models", "list", "--json"]) == 0
    assert [(v["id"], v["status"]) for v in json.loads(capsys.readouterr().out)] == [(version, "active")]


def test_models_import_refuses_what_it_cannot_load_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAPBOT_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "paligemma").mkdir()
    (tmp_path / "paligemma" / "config.json").write_text('{"model_type": "paligemma"}')
    assert main(["models", "import", str(tmp_path / "paligemma")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "paligemma model" in errors[0] and "ViT + GPT-2" in errors[0]
    assert main(["models", "import", str(tmp_path / "missing")]) == 2
    assert "model directory not found" in capsys.readouterr().err
    assert not (tmp_path / "data" / "models").exists() or not any((tmp_path / "data" / "models").iterdir())
