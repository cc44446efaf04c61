"""The CPU fast path of the BLIP, GIT, Florence-2 and SmolVLM families: `quantize_for_cpu`.

Transformers' own `generate` keeps driving the model (its search, stopping and prompt handling are the
exact path's), and only the two costs that dominate a caption on the CPU change:
- the vision tower (a ViT, DaViT or SigLIP: compute-bound, once per image) runs as an int8 ONNX Runtime
  graph, cached on disk per weights (`inference.fast.vision`);
- every other `nn.Linear` (the text model, its LM head and the image-to-text projection: streamed once per
  new token) becomes torch's dynamic quantized Linear with fp16 weights (int8 ones as an option).
Speed and fidelity per family: docs/performance.md ("Other families").

torch's dynamic quantisation (`torch.ao.quantization.quantize_dynamic`) is deprecated in torch 2.13 in favour
of torchao, which capbot does not install; it is still shipped and is what runs here.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from inference.fast.vision import OrtVisionTower, load_vision_tower

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VisionSite:
    """Where a family keeps its vision tower, and how big an image (or tile) it takes."""

    path: str  # attribute path from the loaded model to the tower
    fixed_size: bool  # the config's vision_config.image_size is the input size (else: the processor's)


# The text model's Linear weights: fp16 (the default: within the fidelity bar) or int8 (faster, not within it on
# the trained tiny models; docs/performance.md, "Other families").
TEXT_WEIGHTS = ("fp16", "int8")

SITES = {
    "blip": VisionSite("vision_model", True),
    "git": VisionSite("git.image_encoder", True),
    "florence2": VisionSite("model.vision_tower", False),  # DaViT takes any size: the processor decides
    "smolvlm": VisionSite("model.vision_model", True),  # one tile of vision_config.image_size
}


def quantize_for_cpu(model: Any, family: str, *, model_dir: str | Path, cache_dir: str | Path | None = None,
                     threads: int = 1, beside: bool = True, text: str = "fp16") -> Any:
    """`model` (a loaded HF model of `family`, eval, fp32) with an int8 ONNX Runtime vision tower and dynamic
    quantized `nn.Linear` layers everywhere else; `generate` works on it as before. Changes `model` in place
    and returns it.

    The tower's graph is built once per weights into `model_dir`'s cache (`cache_dir` if that is read-only
    or `beside` is False, as for a hub snapshot; see `inference.fast.vision`). `text`: the other Linear
    layers' weights, `fp16` (the default, within the fidelity bar) or `int8` (faster, not within it).
    `threads` is the ONNX Runtime session's intra-op thread count; the text model runs on torch's threads,
    which the caller sets (`torch.set_num_threads`): one thread per engine was the fastest per caption on the
    shared 2-core machine (docs/performance.md, "Other families").
    """
    if family not in SITES:
        raise ValueError(f"no CPU fast path for family {family!r}; one of {', '.join(SITES)}")
    if text not in TEXT_WEIGHTS:
        raise ValueError(f"text weights {text!r}: use one of {', '.join(TEXT_WEIGHTS)}")
    site = SITES[family]
    parent, _, name = site.path.rpartition(".")
    owner = model.get_submodule(parent) if parent else model
    tower = getattr(owner, name)
    if isinstance(tower, OrtVisionTower):
        raise ValueError("this model went through quantize_for_cpu already")
    model.eval()
    shape = (_channels(model, family), *_image_size(model, family, site, Path(model_dir)))
    served = load_vision_tower(tower.eval(), family, shape, model_dir=Path(model_dir),
                               cache_dir=Path(cache_dir) if cache_dir else None, threads=threads, beside=beside,
                               export_context=_full_tile_positions if family == "smolvlm" else None)
    setattr(owner, name, served)
    quantize_linears(model, text)
    return model


def quantize_linears(model: torch.nn.Module, weights: str = "fp16") -> torch.nn.Module:
    """Every `nn.Linear` of `model` as torch's dynamic quantized Linear, in place: `fp16` weights (fp32
    products) or `int8` ones (per output channel; activations in 7 bits, per call over the whole tensor)."""
    from torch.ao.quantization import float16_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    qconfig, dtype = {"fp16": (float16_dynamic_qconfig, torch.float16),
                      "int8": (per_channel_dynamic_qconfig, torch.qint8)}[weights]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao.quantization: see the module docstring
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message=r".*quantize_per_(tensor|channel).*deprecated")
        quantize_dynamic(model, {torch.nn.Linear: qconfig}, dtype=dtype, inplace=True)
    return model


@contextlib.contextmanager
def _full_tile_positions(tower: torch.nn.Module) -> Iterator[None]:
    """While exporting SmolVLM's (Idefics3) tower: position ids of a whole tile, 0..patches-1.

    Its embeddings derive position ids from the patch mask with `bucketize`, which the TorchScript exporter
    types as float (ONNX Runtime then refuses the graph). For a tile without padding (what the processor
    makes; the graph serves only unpadded tiles, see `OrtVisionTower`) those ids are simply 0..patches-1.
    """
    embeddings = tower.embeddings

    def forward(pixel_values: torch.Tensor, patch_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        patches = embeddings.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        return patches + embeddings.position_embedding.weight[: patches.shape[1]].unsqueeze(0)

    embeddings.forward = forward
    try:
        yield
    finally:
        del embeddings.forward


def _channels(model: Any, family: str) -> int:
    vision = getattr(model.config, "vision_config", None)
    return int(getattr(vision, "num_channels", None) or getattr(vision, "in_chans", None) or 3)


def _image_size(model: Any, family: str, site: VisionSite, model_dir: Path) -> tuple[int, int]:
    if site.fixed_size:
        size = model.config.vision_config.image_size
        return (size, size) if isinstance(size, int) else tuple(size)
    # Florence-2: the size its image processor resizes to (768 x 768 for Florence-2-base and -large).
    from transformers import AutoImageProcessor

    size = AutoImageProcessor.from_pretrained(model_dir).size
    return int(size["height"]), int(size["width"])
