"""Build a new, untrained captioning model and save it as a model directory (`capbot models init`).

The transformers ViT+GPT-2 recipe: a ViT encoder and a GPT-2 decoder with cross-attention joined in a
`VisionEncoderDecoderModel`. Each half comes from a checkpoint (hub id or directory) or, when none is
given, is built with random weights from a preset. The tokenizer comes from `tokenizer`, else from the
decoder checkpoint, else is trained here (byte-level BPE) on caption text.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
from pathlib import Path
from typing import Callable, Iterable

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2LMHeadModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    ViTModel,
    VisionEncoderDecoderModel,
)

from storage.errors import UserError
from inference.hub import load_pretrained
from inference.modeldir import ModelMetadata, make_image_processor, new_metadata, save_model_dir, set_token_ids
from inference.presets import Preset, decoder_config, encoder_config, get_preset

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
SPECIAL_TOKENS = [BOS, EOS, PAD, UNK]


class CaptionsFileError(UserError):
    """A `--captions` file could not be read or held no captions."""


def init_model(
    out_dir: str | Path,
    *,
    preset: str = "tiny",
    encoder: str | None = None,
    decoder: str | None = None,
    tokenizer: str | None = None,
    captions: Iterable[str] | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> ModelMetadata:
    """Build a new captioning model, save it to `out_dir` as a model directory and return its metadata.

    `encoder` / `decoder` / `tokenizer` are hub ids or directories; halves without a checkpoint use the
    preset's architecture with weights drawn from `seed`. `captions` is the text a new tokenizer is trained
    on (a built-in corpus when None).
    """
    step = progress or (lambda _msg: None)
    spec = get_preset(preset)
    torch.manual_seed(seed)

    # 1. Tokenizer first: a new decoder's vocabulary size follows it.
    step("preparing tokenizer")
    tok, tok_source = _tokenizer(tokenizer, decoder, captions, spec)
    # 2. The two halves, joined; the composite adds a projection when their widths differ.
    step("building encoder")
    enc = _encoder(encoder, spec)
    step("building decoder")
    dec = _decoder(decoder, spec, tok)
    model = VisionEncoderDecoderModel(encoder=enc, decoder=dec)
    set_token_ids(model, tok)
    # 3. Image processor: the encoder checkpoint's own when there is one, else the preset's size.
    processor = _image_processor(encoder, enc)
    # 4. Save everything with metadata describing how it was made.
    metadata = new_metadata(
        made_by="init",
        preset=None if encoder and decoder else spec.name,
        source={"encoder": encoder or f"preset:{spec.name}", "decoder": decoder or f"preset:{spec.name}", "tokenizer": tok_source},
        extra={
            "seed": seed,
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "vocab_size": len(tok),
            "image_size": _image_size(processor, spec),
        },
    )
    step(f"saving to {out_dir}")
    save_model_dir(model, processor, tok, out_dir, metadata, overwrite=overwrite)
    log.info("initialised model", extra={"path": str(out_dir), "version": metadata.version, "preset": spec.name})
    return metadata


def train_tokenizer(captions: Iterable[str], vocab_size: int, *, max_length: int = 64) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer (GPT-2's scheme) with `<s> </s> <pad> <unk>` specials.

    Byte-level means any text encodes, even words absent from `captions`. The tokenizer does not add
    bos/eos itself: the model starts decoding from bos, and training appends eos to its labels.
    """
    texts = [c.strip() for c in captions if c and c.strip()]
    if not texts:
        raise CaptionsFileError("no caption text to train a tokenizer on", reason="empty")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=1, special_tokens=SPECIAL_TOKENS, show_progress=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK, model_max_length=max_length
    )


def read_captions(path: str | Path) -> list[str]:
    """Caption text from a file: a COCO captions JSON (`annotations[].caption`) or one caption per line."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaptionsFileError(f"cannot read captions file {path}: {exc}", reason="unreadable") from exc
    if path.suffix.lower() == ".json":
        try:
            captions = [a["caption"] for a in json.loads(text)["annotations"]]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CaptionsFileError(f"{path} is not a COCO captions file (annotations[].caption): {exc}", reason="invalid") from exc
    else:
        captions = text.splitlines()
    captions = [c.strip() for c in captions if isinstance(c, str) and c.strip()]
    if not captions:
        raise CaptionsFileError(f"{path} holds no captions", reason="empty")
    return captions


def builtin_captions() -> list[str]:
    """A small deterministic corpus: shape scenes (as in synthetic data) plus everyday photo captions."""
    colours = ["red", "green", "blue", "yellow", "orange", "purple", "pink", "white", "black", "gray", "brown", "cyan"]
    shapes = ["circle", "square", "triangle", "rectangle", "star", "ellipse", "cross", "diamond"]
    sizes = ["small", "large", "big", "tiny", "medium"]
    places = ["on the left", "on the right", "at the top", "at the bottom", "in the center", "in the top left corner",
              "in the bottom right corner", "next to each other", "above", "below"]
    counts = ["two", "three", "four", "five"]
    rng = random.Random(0)
    scenes = []
    for colour, shape, place in itertools.product(colours, shapes, places):
        size, other, bg = rng.choice(sizes), rng.choice(colours), rng.choice(colours)
        scenes.append(f"a {size} {colour} {shape} {place} on a {bg} background")
        scenes.append(f"{rng.choice(counts)} {colour} {shape}s and a {other} {rng.choice(shapes)} {place}")
    return scenes + _EVERYDAY


_EVERYDAY = [
    "a man riding a bike down a city street", "a woman holding an umbrella in the rain",
    "a dog running on the grass in a park", "a cat sitting on a wooden table", "a plate of food with vegetables",
    "a group of people standing on a beach", "a red bus parked on the side of the road",
    "a kitchen with a stove and a refrigerator", "a bowl of fruit on a counter", "an airplane flying in a blue sky",
    "a train on the tracks next to a station", "a person skiing down a snowy hill", "a bird perched on a branch",
    "two giraffes standing in a field", "a living room with a couch and a television",
    "a young boy playing with a ball", "a close up of a cup of coffee", "a rocket launching into the sky",
    "an astronaut in a white space suit", "a motorcycle parked on the sidewalk", "a horse standing in a field",
    "a black and white photo of a man with a camera", "a boat floating on a lake", "a pizza on a wooden board",
]


def _tokenizer(tokenizer: str | None, decoder: str | None, captions: Iterable[str] | None, spec: Preset) -> tuple[PreTrainedTokenizerBase, str]:
    if tokenizer:
        return load_pretrained(AutoTokenizer.from_pretrained, tokenizer, "tokenizer"), tokenizer
    if decoder:  # a pretrained decoder only makes sense with the vocabulary it was trained on
        return load_pretrained(AutoTokenizer.from_pretrained, decoder, "tokenizer"), decoder
    texts = list(captions) if captions is not None else builtin_captions()
    source = "trained:captions" if captions is not None else "trained:builtin"
    return train_tokenizer(texts, spec.vocab_size, max_length=spec.decoder_positions), source


def _encoder(encoder: str | None, spec: Preset) -> torch.nn.Module:
    if encoder:
        return load_pretrained(AutoModel.from_pretrained, encoder, "encoder")
    return ViTModel(encoder_config(spec))  # with the pooler: from_pretrained expects it


def _decoder(decoder: str | None, spec: Preset, tok: PreTrainedTokenizerBase) -> torch.nn.Module:
    if decoder:
        # The is_decoder/add_cross_attention trap: a plain GPT-2 checkpoint has neither (and transformers 5
        # refuses them as from_pretrained kwargs); set them on its config so loading adds freshly
        # initialised cross-attention layers and the decoder can see the image.
        config = load_pretrained(AutoConfig.from_pretrained, decoder, "decoder")
        config.is_decoder = True
        config.add_cross_attention = True
        model = load_pretrained(AutoModelForCausalLM.from_pretrained, decoder, "decoder", config=config)
        if len(tok) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tok))
        return model
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    return GPT2LMHeadModel(decoder_config(spec, vocab_size=len(tok), bos_token_id=bos, eos_token_id=tok.eos_token_id))


def _image_processor(encoder: str | None, enc: torch.nn.Module):
    if encoder:
        try:
            return load_pretrained(AutoImageProcessor.from_pretrained, encoder, "image processor")
        except UserError:  # an encoder saved without its processor: fall back to its input size
            pass
    return make_image_processor(int(enc.config.image_size))


def _image_size(processor, spec: Preset) -> int:
    size = getattr(processor, "size", None) or {}
    return int(size.get("height", spec.image_size)) if isinstance(size, dict) else spec.image_size
