"""The tiny model of every family (tests/families.py) is a directory plain transformers code loads and captions
with, offline, in both layouts users hold: transformers 5's own save, and the hub's files with a `.bin`."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

from tests.families import (
    FAMILIES, SMOLVLM_QUESTION, build_family_model, caption_inputs, load_family_model, model_card_captions,
    synthetic_captions,
)

VARIANTS = [("safetensors", "processor"), ("bin", "hub")]
MODEL_TYPES = {"vision-encoder-decoder": "vision-encoder-decoder", "blip": "blip", "git": "git",
               "florence2": "florence2", "smolvlm": "idefics3"}
TRANSFORMERS_FILES = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"}


@pytest.fixture(scope="module")
def built(synthetic_dataset, tmp_path_factory):
    """Every family in both variants, from the synthetic training captions: {(family, weights): BuiltFamily}."""
    captions = synthetic_captions(synthetic_dataset.out_dir)
    root = tmp_path_factory.mktemp("families")
    return {(family, weights): build_family_model(family, root / f"{family}-{weights}", captions, weights=weights, layout=layout)
            for family in FAMILIES for weights, layout in VARIANTS}


@pytest.fixture(scope="module")
def images(synthetic_dataset):
    return [Image.open(p).convert("RGB") for p in sorted((synthetic_dataset.out_dir / "test").glob("*.png"))[:2]]


def test_every_family_is_an_image_text_to_text_model_of_the_installed_transformers():
    assert set(MODEL_TYPES.values()) <= set(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_directory_holds_transformers_files_only(built, family):
    processor_files = {
        "vision-encoder-decoder": {"preprocessor_config.json"},
        "smolvlm": {"processor_config.json", "chat_template.jinja"},
    }.get(family, {"processor_config.json"})
    hub_files = {"smolvlm": {"preprocessor_config.json", "processor_config.json", "chat_template.json"}}.get(
        family, {"preprocessor_config.json"})

    assert {p.name for p in built[family, "safetensors"].path.iterdir()} == TRANSFORMERS_FILES | {"model.safetensors"} | processor_files
    assert {p.name for p in built[family, "bin"].path.iterdir()} == TRANSFORMERS_FILES | {"pytorch_model.bin"} | hub_files
    config = json.loads((built[family, "bin"].path / "config.json").read_text())
    assert config["model_type"] == MODEL_TYPES[family] and config["architectures"] == [built[family, "bin"].model_class]


@pytest.mark.parametrize("weights", ["safetensors", "bin"])
@pytest.mark.parametrize("family", FAMILIES)
def test_the_auto_classes_load_it_from_disk_and_it_captions(built, images, family, weights):
    model_dir = built[family, weights]
    _, loading = AutoModelForImageTextToText.from_pretrained(model_dir.path, output_loading_info=True)
    model, processor = load_family_model(model_dir.path)

    assert not any(loading[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), loading
    assert type(model).__name__ == model_dir.model_class
    parts = getattr(processor, "image_processor", processor) if family == "vision-encoder-decoder" else processor
    assert type(parts).__name__ == model_dir.processor_class
    inputs = caption_inputs(family, processor, images)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4)
    prompt_tokens = inputs["input_ids"].shape[1] if family == "smolvlm" else 0  # decoder-only: the prompt comes back
    start_tokens = 1 if family in ("vision-encoder-decoder", "blip", "git", "florence2") else 0  # bos / decoder start
    assert out.shape == (len(images), prompt_tokens + start_tokens + 4)
    captions = model_card_captions(family, model, processor, images, max_new_tokens=4, min_new_tokens=4)
    assert len(captions) == len(images) and all(captions)
    assert not any(SMOLVLM_QUESTION in c or "Assistant:" in c for c in captions)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_bin_directory_holds_the_same_model_as_the_safetensors_one(built, images, family):
    safetensors = load_file(built[family, "safetensors"].path / "model.safetensors")
    pickled = torch.load(built[family, "bin"].path / "pytorch_model.bin", weights_only=True)

    assert set(safetensors) == set(pickled) and all(torch.equal(safetensors[name], pickled[name]) for name in safetensors)
    captions = [model_card_captions(family, *load_family_model(built[family, w].path), images, max_new_tokens=4,
                                    min_new_tokens=4) for w in ("safetensors", "bin")]
    assert captions[0] == captions[1]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_tokenizer_is_trained_on_the_captions_and_reads_held_out_ones_back(built, synthetic_dataset, family):
    _, processor = load_family_model(built[family, "safetensors"].path)
    tokenizer = processor.tokenizer
    held_out = synthetic_captions(synthetic_dataset.out_dir, "test")[:20]

    for caption in held_out:
        ids = tokenizer(caption, add_special_tokens=False).input_ids
        assert tokenizer.decode(ids) == (caption.lower() if family in ("blip", "git") else caption)  # BERT's are uncased
        assert tokenizer.unk_token_id not in ids
    assert len(tokenizer) < 1000  # trained here, not a hub vocabulary


def test_the_same_seed_builds_the_same_model(synthetic_dataset, tmp_path):
    captions = synthetic_captions(synthetic_dataset.out_dir)
    first, second = (build_family_model("blip", tmp_path / name, captions, seed=3) for name in ("a", "b"))

    assert (first.path / "tokenizer.json").read_text() == (second.path / "tokenizer.json").read_text()
    a, b = load_file(first.path / "model.safetensors"), load_file(second.path / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)


@pytest.mark.parametrize("kwargs, message", [
    ({"family": "paligemma"}, "unknown family 'paligemma'"),
    ({"family": "git", "captions": [" ", ""]}, "no caption text"),
    ({"family": "git", "weights": "bin", "layout": "processor"}, "safetensors only"),
])
def test_bad_requests_get_a_clear_error(tmp_path, kwargs, message):
    arguments = {"captions": ["a red circle"], **kwargs}
    with pytest.raises(ValueError, match=message):
        build_family_model(out_dir=tmp_path / "m", **arguments)


def test_what_the_family_processors_import_is_installed_and_locked():
    # SmolVLM2's processor raises ImportError without num2words (transformers 5.24, processing_smolvlm.py).
    from pathlib import Path

    from transformers.utils import is_num2words_available

    lock = (Path(__file__).resolve().parents[2] / "requirements.lock").read_text().splitlines()
    assert is_num2words_available() and any(line.startswith("num2words==") for line in lock)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_batch_of_pictures_of_other_shapes_gets_the_captions_each_gets_alone(built, images, family):
    # SmolVLM splits a picture into a number of tiles that follows its shape, so its prompts differ in length.
    model, processor = load_family_model(built[family, "safetensors"].path)
    pictures = [images[0], images[1].resize((64, 24))]

    alone = [model_card_captions(family, model, processor, [p], max_new_tokens=4, min_new_tokens=4)[0] for p in pictures]
    assert model_card_captions(family, model, processor, pictures, max_new_tokens=4, min_new_tokens=4) == alone
