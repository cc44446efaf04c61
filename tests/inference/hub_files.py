"""The file set of `nlpconnect/vit-gpt2-image-captioning` (capbot's default model), rebuilt offline.

What the hub repository's main branch holds (public facts, docs/models.md): `config.json` written by
transformers 4.11 (every generation parameter of the time inside each sub-config, the decoder's
`max_length: 20`, all special ids 50256, pad == eos), `preprocessor_config.json` (`ViTFeatureExtractor`,
mean/std 0.5, size 224, resample 2), `pytorch_model.bin` (no safetensors, no generation_config.json) whose
GPT-2 layers still carry the constant buffers transformers 4.11 saved (`attn.bias`, `attn.masked_bias`,
and the same two for `crossattention`), and GPT-2's tokenizer files (`vocab.json`, `merges.txt`,
`tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`).

`build_hub_files` writes that file set with the same names and config keys. Only sizes shrink (ViT and
GPT-2 widths and depths; the real weights are 982 MB) and the weights are random; the byte-level BPE
vocabulary has GPT-2's size (50,257, `<|endoftext|>` last) but is trained here on made-up words, since the
real one cannot be downloaded. `as_hub_cache` files it under a hub cache (models--OWNER--NAME/snapshots/
REV, refs/main) so it loads by its hub id with HF_HUB_OFFLINE set, exactly as a cached download would.
"""

from __future__ import annotations

import copy
import json
import random
import string
from pathlib import Path

HUB_ID = "nlpconnect/vit-gpt2-image-captioning"
REVISION = "dc68f91c06a1ba6f15268e5b9c13ae7a7c514084"  # any 40-hex commit id: the cache layout needs one
SPECIAL = "<|endoftext|>"
VOCAB = 50257  # GPT-2's: 256 bytes + 50,000 merges + <|endoftext|> (id 50256)

_GENERATION_DEFAULTS = {  # what transformers 4.11's PretrainedConfig wrote into every config
    "bad_words_ids": None, "chunk_size_feed_forward": 0, "diversity_penalty": 0.0, "do_sample": False,
    "early_stopping": False, "encoder_no_repeat_ngram_size": 0, "finetuning_task": None,
    "forced_bos_token_id": None, "forced_eos_token_id": None, "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
    "is_encoder_decoder": False, "label2id": {"LABEL_0": 0, "LABEL_1": 1}, "length_penalty": 1.0,
    "max_length": 20, "min_length": 0, "no_repeat_ngram_size": 0, "num_beam_groups": 1, "num_beams": 1,
    "num_return_sequences": 1, "output_attentions": False, "output_hidden_states": False, "output_scores": False,
    "prefix": None, "problem_type": None, "pruned_heads": {}, "remove_invalid_values": False,
    "repetition_penalty": 1.0, "return_dict": True, "return_dict_in_generate": False, "sep_token_id": None,
    "temperature": 1.0, "tie_encoder_decoder": False, "tie_word_embeddings": True, "tokenizer_class": None,
    "top_k": 50, "top_p": 1.0, "torch_dtype": None, "torchscript": False, "transformers_version": "4.11.0.dev0",
    "use_bfloat16": False, "cross_attention_hidden_size": None, "_name_or_path": "",
}
CONFIG = {
    "architectures": ["VisionEncoderDecoderModel"],
    "bos_token_id": 50256,
    "decoder": {
        **_GENERATION_DEFAULTS,
        "activation_function": "gelu_new", "add_cross_attention": True, "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1, "bos_token_id": 50256, "decoder_start_token_id": 50256, "embd_pdrop": 0.1,
        "eos_token_id": 50256, "initializer_range": 0.02, "is_decoder": True, "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_inner": None, "n_layer": 12,
        "n_positions": 1024, "pad_token_id": 50256, "reorder_and_upcast_attn": False, "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True, "summary_activation": None,
        "summary_first_dropout": 0.1, "summary_proj_to_labels": True, "summary_type": "cls_index",
        "summary_use_proj": True, "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
        "use_cache": True, "vocab_size": VOCAB,
    },
    "decoder_start_token_id": 50256,
    "encoder": {
        **_GENERATION_DEFAULTS,
        "add_cross_attention": False, "architectures": ["ViTModel"], "attention_probs_dropout_prob": 0.0,
        "bos_token_id": None, "decoder_start_token_id": None, "eos_token_id": None, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "hidden_size": 768, "image_size": 224, "initializer_range": 0.02,
        "intermediate_size": 3072, "is_decoder": False, "layer_norm_eps": 1e-12, "model_type": "vit",
        "num_attention_heads": 12, "num_channels": 3, "num_hidden_layers": 12, "pad_token_id": None,
        "patch_size": 16, "qkv_bias": True, "task_specific_params": None,
    },
    "eos_token_id": 50256,
    "is_encoder_decoder": True,
    "model_type": "vision-encoder-decoder",
    "pad_token_id": 50256,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
    "transformers_version": None,
}
PREPROCESSOR = {
    "do_normalize": True, "do_resize": True, "feature_extractor_type": "ViTFeatureExtractor",
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, "size": 224,
}
TOKENIZER_CONFIG = {
    "unk_token": SPECIAL, "bos_token": SPECIAL, "eos_token": SPECIAL, "add_prefix_space": False,
    "model_max_length": 1024, "special_tokens_map_file": None, "name_or_path": "gpt2",
    "tokenizer_class": "GPT2Tokenizer",
}
SPECIAL_TOKENS_MAP = {"bos_token": SPECIAL, "eos_token": SPECIAL, "unk_token": SPECIAL}
FILES = ("config.json", "preprocessor_config.json", "pytorch_model.bin", "vocab.json", "merges.txt",
         "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

# Widths and depths of the small copy (the real ones: 768 wide, 12 layers, 12 heads, 3072 MLP).
SMALL = {"encoder": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
         "decoder": {"n_embd": 32, "n_layer": 2, "n_head": 2}}


def build_hub_files(out: Path, *, sizes: dict | None = None, seed: int = 0) -> Path:
    """Write the hub repository's file set into `out` (random weights, `sizes` over the real config)."""
    out.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(CONFIG)
    for part, values in (SMALL if sizes is None else sizes).items():
        config[part].update(values)
    _write_json(out / "config.json", config)
    _write_json(out / "preprocessor_config.json", PREPROCESSOR)
    _write_tokenizer(out, seed)
    _write_legacy_weights(out, config, seed)
    return out


def as_hub_cache(files: Path, cache: Path, hub_id: str = HUB_ID) -> Path:
    """Lay `files` out as huggingface_hub's cache of `hub_id` at main under `cache` (HF_HUB_CACHE);
    returns the snapshot directory."""
    repo = cache / f"models--{hub_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    for path in files.iterdir():
        target = snapshot / path.name
        if not target.exists():
            target.symlink_to(path)
    return snapshot


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_tokenizer(out: Path, seed: int) -> None:
    """GPT-2's tokenizer files: a byte-level BPE of GPT-2's size, `<|endoftext|>` its last id."""
    from tokenizers import ByteLevelBPETokenizer

    rng = random.Random(seed)
    words = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9))) for _ in range(60000)]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(words[i:i + 12]) for i in range(0, len(words), 12)],
                            vocab_size=VOCAB - 1, min_frequency=1, show_progress=False)
    bpe.add_special_tokens([SPECIAL])
    assert bpe.token_to_id(SPECIAL) == VOCAB - 1, "the made-up words gave too few merges"
    bpe.save_model(str(out))  # vocab.json, merges.txt
    bpe.save(str(out / "tokenizer.json"))
    _write_json(out / "tokenizer_config.json", TOKENIZER_CONFIG)
    _write_json(out / "special_tokens_map.json", SPECIAL_TOKENS_MAP)


def _write_legacy_weights(out: Path, config: dict, seed: int) -> None:
    """`pytorch_model.bin` as transformers 4.11 saved it: today's weights plus each GPT-2 attention's
    causal-mask buffer (`bias`, uint8) and its `masked_bias` constant, for self- and cross-attention."""
    import torch
    from transformers import VisionEncoderDecoderConfig, VisionEncoderDecoderModel

    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(VisionEncoderDecoderConfig.from_dict(config))
    state = dict(model.state_dict())
    positions = config["decoder"]["n_positions"]
    mask = torch.tril(torch.ones((positions, positions), dtype=torch.uint8)).view(1, 1, positions, positions)
    for layer in range(config["decoder"]["n_layer"]):
        for attention in ("attn", "crossattention"):
            prefix = f"decoder.transformer.h.{layer}.{attention}"
            state[f"{prefix}.bias"] = mask
            state[f"{prefix}.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, out / "pytorch_model.bin")
