"""`init_model` and model directories: presets, checkpoints, tokenizer training, metadata, atomic saves."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoTokenizer, GPT2Config, GPT2LMHeadModel, ViTConfig, ViTModel

from inference.hub import ModelLoadError
from inference.model_init import CaptionsFileError, builtin_captions, init_model, read_captions, train_tokenizer
from inference.modeldir import METADATA_FILE, ModelDirError, load_metadata, make_image_processor, new_metadata, save_model_dir
from inference.presets import PRESETS, UnknownPresetError, decoder_config, encoder_config, get_preset


def test_tiny_model_dir_holds_every_piece(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "preprocessor_config.json",
            "tokenizer.json", "tokenizer_config.json", METADATA_FILE} <= names
    meta = json.loads((tiny_model_dir / METADATA_FILE).read_text())
    assert meta["made_by"] == "init" and meta["preset"] == "tiny" and meta["parent_version"] is None
    assert meta["source"] == {"encoder": "preset:tiny", "decoder": "preset:tiny", "tokenizer": "trained:builtin"}
    assert meta["version"] and meta["created_at"].endswith("+00:00")
    assert meta["extra"]["seed"] == 0 and meta["extra"]["image_size"] == 64
    assert load_metadata(tiny_model_dir).version == meta["version"]


def test_tiny_model_reloads_with_token_ids_set(tiny_model_dir):
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    gen = model.generation_config
    assert gen.decoder_start_token_id == tok.bos_token_id == model.config.decoder_start_token_id
    assert gen.eos_token_id == tok.eos_token_id and gen.pad_token_id == tok.pad_token_id
    assert model.decoder.config.vocab_size == len(tok) == PRESETS["tiny"].vocab_size
    # A training step works: labels need pad_token_id and decoder_start_token_id on the config.
    labels = tok(["a red circle on a blue background"], return_tensors="pt").input_ids
    out = model(pixel_values=torch.randn(1, 3, 64, 64), labels=labels)
    assert torch.isfinite(out.loss)


def test_byte_level_tokenizer_encodes_unseen_words():
    tok = train_tokenizer(["a red circle", "a blue square"] * 5, vocab_size=300)
    ids = tok("zebra crossing!").input_ids
    assert tok.decode(ids) == "zebra crossing!"
    assert {tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token} == {"<s>", "</s>", "<pad>", "<unk>"}


def test_init_from_encoder_and_plain_gpt2_checkpoints(tmp_path):
    # A plain saved GPT-2 has neither is_decoder nor cross-attention: the trap init_model must handle.
    enc_dir, dec_dir = tmp_path / "enc", tmp_path / "dec"
    ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=128)).save_pretrained(enc_dir)
    tok = train_tokenizer(builtin_captions(), vocab_size=320)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=48, n_layer=1, n_head=2)).save_pretrained(dec_dir)
    tok.save_pretrained(dec_dir)

    meta = init_model(tmp_path / "m", encoder=str(enc_dir), decoder=str(dec_dir))

    assert meta.preset is None and meta.source == {"encoder": str(enc_dir), "decoder": str(dec_dir), "tokenizer": str(dec_dir)}
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "m")
    assert model.decoder.config.add_cross_attention and model.decoder.config.is_decoder
    out = model.generate(torch.randn(2, 3, 32, 32), max_new_tokens=4)  # image size from the encoder, widths projected
    assert out.shape[0] == 2


def test_init_with_captions_trains_on_them(tmp_path):
    captions = tmp_path / "caps.txt"
    captions.write_text("a purple zebra\n\n a purple zebra eating\n" * 20)
    meta = init_model(tmp_path / "m", captions=read_captions(captions))
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert meta.source["tokenizer"] == "trained:captions"
    assert len(tok("purple zebra").input_ids) <= 3  # learned as few merged tokens


def test_read_captions_coco_json_and_errors(tmp_path):
    coco = tmp_path / "captions_train.json"
    coco.write_text(json.dumps({"images": [], "annotations": [{"id": 1, "image_id": 1, "caption": " a dog "}]}))
    assert read_captions(coco) == ["a dog"]
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(CaptionsFileError, match="no captions"):
        read_captions(tmp_path / "empty.txt")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(CaptionsFileError, match="COCO"):
        read_captions(tmp_path / "bad.json")
    with pytest.raises(CaptionsFileError, match="cannot read"):
        read_captions(tmp_path / "missing.txt")


def test_user_errors_for_bad_sources(tmp_path):
    with pytest.raises(UnknownPresetError, match="tiny"):
        get_preset("huge")
    with pytest.raises(ModelLoadError) as err:
        init_model(tmp_path / "m", decoder=str(tmp_path / "no-such-dir"))
    assert err.value.reason == "not_found"
    with pytest.raises(ModelLoadError) as err:
        init_model(tmp_path / "m", tokenizer=str(tmp_path))  # a directory with no tokenizer in it
    assert err.value.reason == "invalid"
    assert not (tmp_path / "m").exists()


def test_save_refuses_non_empty_dir_and_overwrites_atomically(tmp_path, tiny_model_dir):
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    first = new_metadata(made_by="train", parent_version="p1", extra={"metrics": {"cider": 0.5}})
    with pytest.raises(ModelDirError, match="not empty"):
        save_model_dir(model, make_image_processor(64), tok, out, first)
    assert (out / "keep.txt").exists()
    save_model_dir(model, make_image_processor(64), tok, out, first, overwrite=True)
    assert not (out / "keep.txt").exists()
    loaded = load_metadata(out)
    assert loaded == first and loaded.extra["metrics"]["cider"] == 0.5
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary directories left behind


def test_load_metadata_errors(tmp_path):
    with pytest.raises(ModelDirError, match="no capbot.json"):
        load_metadata(tmp_path)
    (tmp_path / METADATA_FILE).write_text("{not json")
    with pytest.raises(ModelDirError, match="cannot read"):
        load_metadata(tmp_path)


def test_base_preset_is_vit_b16_and_gpt2_small():
    spec = get_preset("base")
    enc, dec = encoder_config(spec), decoder_config(spec, vocab_size=50257, bos_token_id=50256, eos_token_id=50256)
    assert (enc.image_size, enc.patch_size, enc.hidden_size, enc.num_hidden_layers) == (224, 16, 768, 12)
    assert (dec.n_embd, dec.n_layer, dec.n_head, dec.n_positions) == (768, 12, 12, 1024)
    assert dec.add_cross_attention and dec.is_decoder


def test_gpt2_style_tokenizer_without_pad_gets_eos_as_pad_and_start(tmp_path):
    # GPT-2's own tokenizer: one <|endoftext|> token serves as bos/eos/unk, and there is no pad token.
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(builtin_captions(), vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                  unk_token="<|endoftext|>")
    assert tok.pad_token is None
    tok.save_pretrained(tmp_path / "gpt2tok")

    init_model(tmp_path / "m", tokenizer=str(tmp_path / "gpt2tok"))

    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "m")
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    gen = model.generation_config
    assert gen.decoder_start_token_id == gen.pad_token_id == gen.eos_token_id == model.config.pad_token_id == eot
    assert AutoTokenizer.from_pretrained(tmp_path / "m").pad_token == "<|endoftext|>"
