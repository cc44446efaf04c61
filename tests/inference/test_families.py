"""Which family a model directory holds, read from its config.json, and the refusals of every other model."""

from __future__ import annotations

import json

import pytest

from inference.families import FAMILIES, family_of
from inference.hub import ModelLoadError


def _model_dir(tmp_path, config):
    tmp_path.joinpath("config.json").write_text(json.dumps(config) if isinstance(config, dict) else config)
    return tmp_path


@pytest.mark.parametrize("config, family", [
    ({"model_type": "vision-encoder-decoder", "architectures": ["VisionEncoderDecoderModel"]}, "vision-encoder-decoder"),
    ({"model_type": "blip", "architectures": ["BlipForConditionalGeneration"]}, "blip"),
    ({"model_type": "git", "architectures": ["GitForCausalLM"]}, "git"),
    ({"model_type": "florence2", "architectures": ["Florence2ForConditionalGeneration"]}, "florence2"),
    ({"model_type": "idefics3", "architectures": ["Idefics3ForConditionalGeneration"]}, "smolvlm"),
    ({"model_type": "git"}, "git"),  # configs written without `architectures` are read by model_type alone
])
def test_the_family_is_read_from_the_config(tmp_path, config, family):
    assert family_of(_model_dir(tmp_path, config)) == family


@pytest.mark.parametrize("config, reason, words", [
    ({"model_type": "blip", "architectures": ["BlipForQuestionAnswering"]}, "unsupported_family",
     "blip (BlipForQuestionAnswering)"),
    ({"model_type": "florence2", "auto_map": {"AutoConfig": "configuration_florence2.Florence2Config"}},
     "unsupported_family", "florence-community"),
    ({"model_type": "smolvlm", "architectures": ["SmolVLMForConditionalGeneration"]}, "unsupported_family",
     "torchvision"),
    ({"model_type": "paligemma", "architectures": ["PaliGemmaForConditionalGeneration"]}, "unsupported_family",
     "capbot captions with: ViT + GPT-2"),
    ({"architectures": ["GitForCausalLM"]}, "invalid", "names no model_type"),
    ("[1, 2]", "invalid", "not a JSON object"),
    ("{not json", "invalid", "cannot read"),
])
def test_other_models_are_refused_in_one_line_that_says_why(tmp_path, config, reason, words):
    with pytest.raises(ModelLoadError) as refused:
        family_of(_model_dir(tmp_path, config))
    assert refused.value.reason == reason
    assert words in str(refused.value) and "\n" not in str(refused.value)


def test_the_refusal_names_every_supported_family(tmp_path):
    with pytest.raises(ModelLoadError) as refused:
        family_of(_model_dir(tmp_path, {"model_type": "llava"}))
    assert all(family.title in str(refused.value) for family in FAMILIES.values())


def test_a_directory_without_a_config_is_not_a_model(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        family_of(tmp_path)


def test_a_model_of_another_family_than_the_spec_asks_for_is_refused(tmp_path):
    model_dir = _model_dir(tmp_path, {"model_type": "git", "architectures": ["GitForCausalLM"]})
    assert family_of(model_dir, "git") == "git"
    with pytest.raises(ModelLoadError) as refused:
        family_of(model_dir, "blip")
    assert refused.value.reason == "wrong_family"
