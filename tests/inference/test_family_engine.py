"""The BLIP, GIT, Florence-2 and SmolVLM families caption through capbot's engine exactly as their model cards do,
from tiny random models saved by plain transformers code (tests/families.py), in both file layouts."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest
import torch
from PIL import Image

from capbot.cli import main
from inference import family_models
from inference.captioner import LocalCaptioner, load_engine
from inference.engine import Engine
from inference.family_engine import FamilyEngine, teacher_forced_logprobs, token_logprobs
from inference.generation import generate_kwargs, n_best_size
from inference.hub import ModelLoadError
from inference.model_import import import_model
from inference.modeldir import load_metadata
from inference.types import GenerationOptions
from tests.families import (
    SMOLVLM_QUESTION, build_family_model, load_family_model, model_card_captions, synthetic_captions,
)
from tests.specs import exact_greedy

FAMILIES = ("blip", "git", "florence2", "smolvlm")
VARIANTS = [("safetensors", "processor"), ("bin", "hub")]
START_TOKENS = {"blip": 1, "git": 1, "florence2": 1, "smolvlm": 0}  # the decoder's start token leads each row
GREEDY = GenerationOptions(max_new_tokens=8)
BEAMS = GenerationOptions(num_beams=3, num_alternatives=2, max_new_tokens=8)


@pytest.fixture(scope="module")
def built(synthetic_dataset, tmp_path_factory):
    """Every family in both variants: {(family, weights): BuiltFamily}."""
    captions = synthetic_captions(synthetic_dataset.out_dir)
    root = tmp_path_factory.mktemp("family-engine")
    return {(family, weights): build_family_model(family, root / f"{family}-{weights}", captions, weights=weights,
                                                  layout=layout)
            for family in FAMILIES for weights, layout in VARIANTS}


@pytest.fixture(scope="module")
def engines(built):
    return {key: FamilyEngine.load(model.path, model.family, device="cpu") for key, model in built.items()}


@pytest.fixture(scope="module")
def cards(built):
    """(model, processor) of each directory as its model card loads them."""
    return {key: load_family_model(model.path) for key, model in built.items()}


@pytest.fixture(scope="module")
def images(synthetic_dataset):
    """Two test pictures, plus two of other shapes (SmolVLM splits them into other numbers of tiles)."""
    shapes = [Image.open(p).convert("RGB") for p in sorted((synthetic_dataset.out_dir / "test").glob("*.png"))[:2]]
    return [*shapes, shapes[0].resize((90, 30)), shapes[1].resize((24, 96))]


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("weights", ["safetensors", "bin"])
@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_and_beam_captions_are_the_model_cards(engines, cards, images, family, weights):
    engine = engines[family, weights]
    model, processor = cards[family, weights]
    assert isinstance(engine, Engine) and engine.family == family and engine.device_type == "cpu"

    greedy = engine.generate(images[:2], GREEDY)
    assert [o.text for o in greedy] == [one_line(c) for c in model_card_captions(
        family, model, processor, images[:2], max_new_tokens=8, no_repeat_ngram_size=3)]
    beams = engine.generate(images[:2], BEAMS)
    assert all(o.text for o in beams)  # not a comparison of empty texts (greedy Florence-2 ends at once here)
    n_best = model_card_captions(family, model, processor, images[:2], max_new_tokens=8, no_repeat_ngram_size=3,
                                 num_beams=3, num_return_sequences=3)
    for image, output in enumerate(beams):
        rows = [one_line(c) for c in n_best[image * 3:(image + 1) * 3]]
        assert output.text == rows[0]
        assert set(output.alternatives) <= set(rows[1:]) and output.text not in output.alternatives


@pytest.mark.parametrize("family", FAMILIES)
def test_confidence_is_the_geometric_mean_of_the_caption_tokens_probabilities(engines, images, family):
    for options in (GREEDY, BEAMS):
        outputs = engines[family, "safetensors"].generate(images[:2], options)
        assert all(0 < o.confidence <= 1 for o in outputs)
    # Deterministic: the same caption gets the same number.
    again = engines[family, "safetensors"].generate(images[:2], BEAMS)
    assert [o.confidence for o in again] == [o.confidence for o in outputs]


@pytest.mark.parametrize("family", FAMILIES)
def test_max_new_tokens_bounds_the_caption(engines, images, family):
    for limit in (1, 3):
        outputs = engines[family, "safetensors"].generate(images[:2], replace(GREEDY, max_new_tokens=limit))
        assert all(len(o.token_ids) <= START_TOKENS[family] + limit for o in outputs)
    longer = engines[family, "safetensors"].generate(images[:1], replace(GREEDY, max_new_tokens=8))[0]
    if len(longer.token_ids) == START_TOKENS[family] + 8:  # it did not end early: 3 tokens are a prefix of 8
        assert longer.token_ids[:START_TOKENS[family] + 3] == outputs[0].token_ids


@pytest.mark.parametrize("family", FAMILIES)
def test_micro_batches_of_mixed_sizes_caption_as_one_by_one(built, images, family):
    engine = FamilyEngine.load(built[family, "safetensors"].path, family, device="cpu", batch_size=3)
    together = engine.generate(images, GREEDY)
    alone = [engine.generate([image], GREEDY)[0] for image in images]
    assert [o.text for o in together] == [o.text for o in alone]
    assert [o.confidence for o in together] == pytest.approx([o.confidence for o in alone], rel=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_caption_holds_no_prompt_special_tokens_or_chat_text(engines, images, family):
    engine = engines[family, "bin"]
    tokenizer = engine.processor.tokenizer
    specials = [t for t in tokenizer.all_special_tokens if len(t) > 1]
    prompt_text = ["What does the image describe?", "<CAPTION>", SMOLVLM_QUESTION, "User:", "Assistant:"]
    for output in engine.generate(images, BEAMS):
        for text in (output.text, *output.alternatives):
            assert not any(s in text for s in [*specials, *prompt_text]), text
            assert text == text.strip() and "\n" not in text
        if family == "smolvlm":  # the returned ids are the answer's, not the prompt's
            assert tokenizer.convert_tokens_to_ids("<image>") not in output.token_ids


def test_smolvlm_prompt_goes_through_its_chat_template(built):
    processor = family_models.load_processor(built["smolvlm", "bin"].path, "smolvlm")
    prompt = family_models.caption_prompt("smolvlm", processor, "Describe it.")
    assert prompt == "<|im_start|>User:<image>Describe it.<end_of_utterance>\nAssistant:"
    assert family_models.caption_prompt("smolvlm", processor).count(SMOLVLM_QUESTION) == 1


def test_florence_detailed_caption_prompts_are_an_option(built, cards, images):
    path = built["florence2", "safetensors"].path
    model, processor = cards["florence2", "safetensors"]
    engine = FamilyEngine.load(path, "florence2", device="cpu", prompt="<MORE_DETAILED_CAPTION>")
    inputs = processor(text=["<MORE_DETAILED_CAPTION>"] * 2, images=images[:2], return_tensors="pt")
    with torch.no_grad():
        expected = model.generate(**inputs, max_new_tokens=8, no_repeat_ngram_size=3)
    assert [o.text for o in engine.generate(images[:2], GREEDY)] == [
        one_line(t) for t in processor.batch_decode(expected, skip_special_tokens=True)]
    with pytest.raises(ModelLoadError, match="<DETAILED_CAPTION>") as refused:
        FamilyEngine.load(path, "florence2", device="cpu", prompt="<OCR>")
    assert refused.value.reason == "bad_prompt"


@pytest.mark.parametrize("family", ["blip", "git"])
def test_a_family_without_prompts_refuses_one(built, family):
    with pytest.raises(ModelLoadError, match="takes no prompt"):
        load_engine(built[family, "safetensors"].path, exact_greedy(prompt="a photo of"))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_teacher_forced_pass_scores_the_tokens_as_generate_did(engines, images, family):
    # The pass that scores a caption on the confidence views, on the image itself, gives generate's numbers.
    engine = engines[family, "safetensors"]
    inputs = engine.inputs(images)
    for options in (GREEDY, BEAMS):
        n_best = n_best_size(options)
        with torch.inference_mode():
            out = engine.model.generate(**inputs, num_return_sequences=n_best, output_logits=True,
                                        return_dict_in_generate=True, **generate_kwargs(options))
            rows = out.sequences[:, family_models.prompt_length(family, inputs):]
            forced = teacher_forced_logprobs(family, engine.model, inputs, rows[::n_best], engine.end_ids)
        searched = token_logprobs(out, engine.end_ids)[::n_best]
        assert [len(r) for r in forced] == [len(r) for r in searched]
        assert sum(forced, []) == pytest.approx(sum(searched, []), abs=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_confidence_views_score_the_caption_on_moved_pictures(engines, images, family):
    engine = engines[family, "safetensors"]
    plain = engine.generate(images, replace(BEAMS, confidence_views=0))
    viewed = engine.generate(images, replace(BEAMS, confidence_views=4))
    assert [o.text for o in viewed] == [o.text for o in plain]  # views change the number, not the caption
    assert all(0 < o.confidence <= 1 for o in viewed)
    if len({o.confidence for o in plain}) > 1:  # a model that looks at the picture (tiny BLIP's hardly does)
        assert [o.confidence for o in viewed] != [o.confidence for o in plain]
    # None is the device's default: none on the CPU.
    assert [o.confidence for o in engine.generate(images, replace(BEAMS, confidence_views=None))] == \
        [o.confidence for o in plain]


def test_the_fast_mode_falls_back_to_the_exact_engine_and_says_so_once(built, images, caplog, monkeypatch):
    from inference import captioner

    monkeypatch.setattr(captioner, "_NOTED_NO_FAST_PATH", set())
    caplog.set_level(logging.INFO, logger="inference.captioner")
    spec = exact_greedy(precision="fast")
    first = LocalCaptioner(built["blip", "safetensors"].path, spec)
    first.reload(built["blip", "bin"].path)
    assert isinstance(first.engine, FamilyEngine)
    assert sum("no fast engine" in r.getMessage() for r in caplog.records) == 1
    assert first.caption(images[:1])[0].text


def test_models_import_saves_a_family_model_as_a_version_that_captions_the_same(built, images, tmp_path):
    for family in FAMILIES:
        source = built[family, "bin"]  # the hub's layout and a .bin: saved back as transformers 5 does
        out = import_model(str(source.path), tmp_path / "models")
        meta = load_metadata(out)
        assert (meta.made_by, meta.base, out.name) == ("import", str(source.path), meta.version)
        assert (out / "model.safetensors").is_file() and (out / "processor_config.json").is_file()
        assert "max_length" not in json.loads((out / "generation_config.json").read_text())
        imported = load_engine(out, exact_greedy())
        assert imported.version == meta.version
        original = load_engine(source.path, exact_greedy())
        assert [o.text for o in imported.generate(images, BEAMS)] == [o.text for o in original.generate(images, BEAMS)]


def test_an_unsupported_architecture_is_refused_in_one_line(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "paligemma", "architectures": ["PaliGemmaForConditionalGeneration"]}')
    for attempt in (lambda: load_engine(tmp_path, exact_greedy()), lambda: import_model(str(tmp_path), tmp_path / "m")):
        with pytest.raises(ModelLoadError) as refused:
            attempt()
        assert refused.value.reason == "unsupported_family" and "\n" not in str(refused.value)
        assert "BLIP" in str(refused.value) and "Florence-2" in str(refused.value)


@pytest.mark.parametrize("family", FAMILIES)
def test_capbot_caption_with_a_family_model_directory(built, synthetic_dataset, family, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    photo = sorted((synthetic_dataset.out_dir / "test").glob("*.png"))[0]
    model_dir = built[family, "bin"].path
    assert main(["caption", str(photo), "--model", str(model_dir), "--device", "cpu", "--json",
                 "--max-new-tokens", "6", "--beams", "2"]) == 0
    record = json.loads(capsys.readouterr().out)
    expected = LocalCaptioner(model_dir, exact_greedy(options=GenerationOptions(
        num_beams=2, num_alternatives=1, max_new_tokens=6))).caption([photo.read_bytes()])[0]
    assert record["model_version"] == str(model_dir)
    assert record["caption"] == expected.text and 0 < record["confidence"] <= 1


@pytest.mark.parametrize("family", FAMILIES)
def test_a_hub_download_of_a_family_model_takes_every_file_it_loads_from(built, family):
    # `model_directory` downloads a hub id's snapshot by file patterns; a repository saved by transformers 5
    # keeps SmolVLM's chat template in chat_template.jinja.
    from fnmatch import fnmatch

    from inference.hub import _BIN, _REPO_FILES, _SAFETENSORS

    for weights in ("safetensors", "bin"):
        patterns = [*_REPO_FILES, *(_SAFETENSORS if weights == "safetensors" else _BIN)]
        files = [p.name for p in built[family, weights].path.iterdir()]
        assert [f for f in files if not any(fnmatch(f, pattern) for pattern in patterns)] == []
