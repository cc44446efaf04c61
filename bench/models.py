"""The models the benchmarks run, built offline.

Speed: the full-size architecture of nlpconnect/vit-gpt2-image-captioning (ViT-B/16 at 224 + GPT-2 124M
with GPT-2's 50,257-token vocabulary) with random weights; captions are noise, but every matrix has its
real size and a random model rarely ends a caption early, so each caption is `max_new_tokens` long.
Fidelity: the tiny model trained on synthetic shapes (the test suite's `trained_tiny_model` recipe),
because random weights say nothing about whether int8 changes real captions.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

GPT2_VOCAB = 50257


def full_size_model(out: Path) -> Path:
    """`capbot models init --preset base`, with the decoder's vocabulary grown to GPT-2's 50,257 tokens
    (the offline BPE tokenizer is small; the hub tokenizer cannot be downloaded here). Built once."""
    if (out / "capbot.json").is_file():
        return out
    import torch
    from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

    from inference.model_init import init_model
    from inference.modeldir import load_metadata, save_model_dir, set_token_ids

    small = out.with_name(out.name + "-small-vocab")
    if not (small / "capbot.json").is_file():
        init_model(small, preset="base", seed=0, overwrite=True)
    model = VisionEncoderDecoderModel.from_pretrained(small)
    tokenizer = AutoTokenizer.from_pretrained(small)
    torch.manual_seed(0)
    model.decoder.resize_token_embeddings(GPT2_VOCAB, mean_resizing=False)
    model.config.decoder.vocab_size = GPT2_VOCAB
    set_token_ids(model, tokenizer)
    meta = load_metadata(small)
    meta.extra = {**meta.extra, "vocab_size": GPT2_VOCAB, "note": "bench: decoder vocabulary grown to GPT-2's"}
    save_model_dir(model, AutoImageProcessor.from_pretrained(small), tokenizer, out, meta, overwrite=True)
    log.info("built the full-size benchmark model", extra={"path": str(out)})
    return out


def trained_tiny_model(root: Path) -> Path:
    """The trained tiny fixture (tests/trained_fixture.py's TRAINED_TINY_RECIPE), trained once into `root`; returns
    the model directory. Its data directory is `root / "data"`."""
    from tests.trained_fixture import TRAINED_TINY_RECIPE, build, is_built, load

    fixture = load(root) if is_built(root) else build(root, TRAINED_TINY_RECIPE)
    return Path(fixture.model_dir)
