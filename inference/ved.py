"""The ViT+GPT-2 family's checkpoints, loaded the one way serving, training, import and the fast path's
conversion all use: `load_model`, `load_processor`, `load_tokenizer` over a local model directory.

Two things a checkpoint from the hub brings that capbot does not want, and why (the default model,
nlpconnect/vit-gpt2-image-captioning, has both; docs/models.md):
- GPT-2 layers saved by transformers before 4.31 carry two constant buffers per attention block, the
  causal mask `bias` and `masked_bias`. transformers 5 computes both on the fly and has no place to load them
  into. A `pytorch_model.bin` is therefore read here (tensors only, `weights_only`) and those buffers are left
  out; safetensors files, which capbot writes, never hold them and load through transformers as they are.
- transformers 4.x wrote its generation defaults into every config.json (`max_length: 20`, `num_beams: 1`,
  ...), where transformers 5 still picks them up. They were library defaults, not the author's choices, and
  capbot sets a caption's length with `max_new_tokens`: the generation config is the directory's own
  generation_config.json, or none, and never holds a `max_length` (older capbot saves carried that 20 over).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from inference.hub import ModelLoadError, load_pretrained

LEGACY_BUFFERS = re.compile(r"\.(attn|crossattention)\.(masked_)?bias$")
WEIGHTS_BIN = "pytorch_model.bin"
SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")


def load_model(model_dir: Path, *, dtype: Any = None) -> Any:
    """The `VisionEncoderDecoderModel` in `model_dir` (eval mode), in `dtype` (a torch dtype; None: as saved),
    with capbot's generation config (see the module docstring)."""
    from transformers import AutoConfig, VisionEncoderDecoderModel

    config = load_pretrained(AutoConfig.from_pretrained, model_dir, "model config")
    if config.model_type != "vision-encoder-decoder":
        raise ModelLoadError(f"{model_dir} holds a {config.model_type!r} model, not a VisionEncoderDecoderModel "
                             "(ViT + GPT-2)", reason="invalid")
    extra = {} if dtype is None else {"dtype": dtype}
    state = _bin_state_dict(model_dir)
    if state is None:
        model = load_pretrained(VisionEncoderDecoderModel.from_pretrained, model_dir, "model", config=config, **extra)
    else:
        model = VisionEncoderDecoderModel.from_pretrained(None, config=config, state_dict=state, **extra)
    model.generation_config = generation_config(model_dir)
    return model.eval()


def generation_config(model_dir: Path) -> Any:
    """`model_dir`'s generation_config.json, or an empty generation config; without `max_length` either way."""
    from transformers import GenerationConfig

    if (model_dir / "generation_config.json").is_file():
        config = load_pretrained(GenerationConfig.from_pretrained, model_dir, "generation config")
    else:
        config = GenerationConfig()
    config.max_length = None
    return config


def load_processor(model_dir: Path) -> Any:
    """The image processor saved with the model."""
    from transformers import AutoImageProcessor

    return load_pretrained(AutoImageProcessor.from_pretrained, model_dir, "image processor")


def load_tokenizer(model_dir: Path) -> Any:
    """The tokenizer saved with the model."""
    from transformers import AutoTokenizer

    return load_pretrained(AutoTokenizer.from_pretrained, model_dir, "tokenizer")


def _bin_state_dict(model_dir: Path) -> dict | None:
    """The tensors of a directory whose weights are one `pytorch_model.bin`, legacy buffers left out; None
    for any other layout (safetensors, sharded), which transformers loads itself."""
    path = model_dir / WEIGHTS_BIN
    if not path.is_file() or any((model_dir / name).is_file() for name in SAFETENSORS):
        return None
    import zipfile

    import torch

    try:  # mapped, not read: the full-size model's file is 982 MB (a pre-1.6 torch file cannot be mapped)
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # a truncated download, not a zip archive, pickled code: all unusable
        raise ModelLoadError(f"cannot read the weights {path}: {str(exc).splitlines()[0]}", reason="invalid") from exc
    return {name: tensor for name, tensor in state.items() if not LEGACY_BUFFERS.search(name)}
