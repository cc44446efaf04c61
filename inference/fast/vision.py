"""A model's vision tower as an int8 ONNX Runtime graph, built once per weights and cached on disk.

The fast path of the BLIP, GIT, Florence-2 and SmolVLM families (`inference.fast.families`) swaps each
model's vision tower for an `OrtVisionTower`: the same module interface (pixels in, the tower's
`ModelOutput` out), served by a graph that was
1. exported with the TorchScript exporter (`dynamo=False`, opset 17, as the ViT+GPT-2 graphs are) for one
   image of the size the model's processor makes, and
2. quantised with ONNX Runtime's dynamic int8 (weights per output channel; activations per call), 7-bit
   weights on CPUs whose int8 products saturate (`inference.fast.cpuint8`).
The tower runs one image (or SmolVLM tile) per call: dynamic quantisation scales activations over the whole
input, so a batched call would make an image's features depend on its batch-mates.

Conversions live in `<model dir>/.capbot-fast/vision-<family>-<key>/` (a read-only model directory falls
back to `cache_dir`, else `~/.cache/capbot/fast`, as `inference.fast.cache` does), where the key hashes the
tower's own weights, the image shape and the recipe: other weights give another key, and a stale
conversion is removed once the new one is in place. A conversion ONNX Runtime cannot load (a truncated or
corrupt file) is rebuilt, not served.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch
from filelock import FileLock

from inference.fast.cache import cache_roots
from inference.fast.cpuint8 import int8_products_saturate

log = logging.getLogger(__name__)

# Bump when the export or the quantisation changes: old conversions then count as stale.
RECIPE = "vision-int8-v1"
GRAPH_FILE = "vision.onnx"
META_FILE = "vision.json"
OPSET = 17


class OrtVisionTower(torch.nn.Module):
    """A vision tower served by an ONNX Runtime session, called like the tower it replaces.

    `fallback` is the original fp32 tower, kept outside the module tree (no state_dict entry, untouched by
    quantisation): it serves the calls the graph was not built for, such as another image size, a partial
    SmolVLM patch mask or interpolated position encodings, so an unusual input is slower, never wrong.
    """

    def __init__(self, session: Any, meta: dict, output_class: type, fallback: torch.nn.Module) -> None:
        super().__init__()
        self.session, self.meta, self.output_class = session, meta, output_class
        self.__dict__["fallback"] = fallback  # not a submodule: see the class docstring
        self.input_shape = tuple(meta["input_shape"][1:])
        self.config = getattr(fallback, "config", None)

    def forward(self, pixel_values: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if args or not self._served(pixel_values, kwargs):
            return self.fallback(pixel_values, *args, **kwargs)
        pixels = pixel_values.detach().to(torch.float32).contiguous().numpy()
        rows = [self.session.run(self.meta["outputs"], {"pixel_values": pixels[i:i + 1]}) for i in range(len(pixels))]
        outputs = {name: torch.from_numpy(_concat([row[j] for row in rows]))
                   for j, name in enumerate(self.meta["outputs"])}
        return self.output_class(**outputs)

    def _served(self, pixel_values: torch.Tensor, kwargs: dict) -> bool:
        if tuple(pixel_values.shape[1:]) != self.input_shape or kwargs.get("interpolate_pos_encoding"):
            return False
        mask = kwargs.get("patch_attention_mask")
        return mask is None or bool(mask.all())


def _concat(arrays: list) -> Any:
    import numpy as np

    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)


def load_vision_tower(tower: torch.nn.Module, family: str, input_shape: tuple[int, ...], *, model_dir: Path,
                      cache_dir: Path | None = None, threads: int = 1, beside: bool = True,
                      export_context: Callable[[torch.nn.Module], ContextManager] | None = None) -> OrtVisionTower:
    """`tower` (fp32, eval) as an `OrtVisionTower` over a cached int8 graph, building the graph if missing,
    stale or unreadable. `input_shape` is one image's (channels, height, width); `export_context(tower)`, if
    given, is entered around the export (a family's way to make its tower traceable)."""
    reduce_range = int8_products_saturate()
    shape = (1, *input_shape)
    key = vision_key(tower, family, shape, reduce_range)
    name = f"vision-{family}-{key}"
    for root in cache_roots(Path(model_dir), cache_dir, beside=beside):
        loaded = _try_load(root / name, tower, threads)
        if loaded is not None:
            return loaded
    root = _writable_root(Path(model_dir), cache_dir, beside)
    with FileLock(str(root / ".lock"), timeout=3600):
        loaded = _try_load(root / name, tower, threads)  # another process may have built it meanwhile
        if loaded is not None:
            return loaded
        with export_context(tower) if export_context else contextlib.nullcontext():
            folder = build_vision_graph(tower, root / name, shape, reduce_range=reduce_range,
                                        meta={"family": family, "key": key})
        _remove_stale(root, family, keep=name)
    meta = _read_meta(folder)
    return OrtVisionTower(_session(folder / GRAPH_FILE, threads), meta, _output_class(meta), tower)


def vision_key(tower: torch.nn.Module, family: str, shape: tuple[int, ...], reduce_range: bool) -> str:
    """A short hash of the tower's weights (its state_dict), the input shape and the recipe."""
    digest = hashlib.sha256(f"{RECIPE}-w{7 if reduce_range else 8}\n{family}\n{shape}\n".encode())
    for name, tensor in sorted(tower.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def build_vision_graph(tower: torch.nn.Module, folder: Path, shape: tuple[int, ...], *, reduce_range: bool,
                       meta: dict) -> Path:
    """Export `tower` for inputs of `shape`, quantise it to int8 and write it to `folder` (atomically)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    started = time.perf_counter()
    try:
        outputs, output_class = export_vision_graph(tower, tmp / "fp32.onnx", shape)
        quantize_dynamic(str(tmp / "fp32.onnx"), str(tmp / GRAPH_FILE), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=reduce_range, op_types_to_quantize=["MatMul"],
                         extra_options={"MatMulConstBOnly": True})
        (tmp / "fp32.onnx").unlink()
        for leftover in tmp.glob("*.data"):
            leftover.unlink()
        (tmp / META_FILE).write_text(json.dumps({**meta, "recipe": RECIPE, "reduce_range": reduce_range,
                                                 "input_shape": list(shape), "outputs": outputs,
                                                 "output_class": output_class}, indent=2))
        tmp.chmod(0o755)  # mkdtemp makes it private; serving processes of other users read it
        if folder.exists():  # an unreadable conversion being replaced
            shutil.rmtree(folder, ignore_errors=True)
        tmp.replace(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("built the int8 vision tower",
             extra={"cache": str(folder), "build_s": round(time.perf_counter() - started, 1)})
    return folder


class _TensorOutputs(torch.nn.Module):
    """The tower's tensor outputs as a tuple, in a fixed order (what the exporter can trace)."""

    def __init__(self, tower: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.tower, self.names = tower, names

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.tower(pixel_values)
        return tuple(out[name] for name in self.names)


def export_vision_graph(tower: torch.nn.Module, path: Path, shape: tuple[int, ...]) -> tuple[list[str], str]:
    """Export `tower` (one input of `shape`) to ONNX at `path`; returns the names of its tensor outputs and
    the dotted name of the ModelOutput class it returns."""
    pixels = torch.zeros(shape)
    with torch.no_grad():
        sample = tower(pixels)
    names = [name for name, value in sample.items() if isinstance(value, torch.Tensor)]
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about the shape checks it freezes: the graph serves one image size (the fallback
        # serves any other).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # SigLIP (SmolVLM) indexes its position embeddings with patch positions, never negative, so the
        # exporter's caution about negative indices does not apply; the tests compare the graph's features.
        warnings.filterwarnings("ignore", message="Exporting aten::index operator of advanced indexing")
        torch.onnx.export(_TensorOutputs(tower, names), (pixels,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["pixel_values"], output_names=names)
    return names, f"{type(sample).__module__}.{type(sample).__qualname__}"


def _try_load(folder: Path, tower: torch.nn.Module, threads: int) -> OrtVisionTower | None:
    if not (folder / META_FILE).is_file():
        return None
    try:
        meta = _read_meta(folder)
        session = _session(folder / GRAPH_FILE, threads)
    except Exception as exc:  # a truncated or corrupt conversion: rebuild it rather than fail every load
        log.warning("unreadable int8 vision tower, rebuilding it", extra={"cache": str(folder), "error": str(exc)})
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return OrtVisionTower(session, meta, _output_class(meta), tower)


def _read_meta(folder: Path) -> dict:
    meta = json.loads((folder / META_FILE).read_text())
    expected = (("outputs", list), ("input_shape", list), ("output_class", str))
    if not all(isinstance(meta.get(key), kind) for key, kind in expected):
        raise ValueError(f"{folder / META_FILE} lacks outputs, input_shape or output_class")
    _output_class(meta)
    return meta


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    # Spinning workers steal the cores other work needs on a busy machine (docs/performance.md, threads).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _output_class(meta: dict) -> type:
    """The ModelOutput class the tower returns, recorded in the conversion's meta at export."""
    import importlib

    module, _, name = meta["output_class"].rpartition(".")
    return getattr(importlib.import_module(module), name)


def _writable_root(model_dir: Path, fallback: Path | None, beside: bool) -> Path:
    for root in cache_roots(model_dir, fallback, beside=beside):
        try:
            root.mkdir(parents=True, exist_ok=True)
            tempfile.NamedTemporaryFile(dir=root, prefix=".probe-").close()
            return root
        except OSError:
            continue
    raise OSError(f"no writable cache folder for the int8 vision tower of {model_dir}")


def _remove_stale(root: Path, family: str, keep: str) -> None:
    for entry in root.glob(f"vision-{family}-*"):
        if entry.is_dir() and entry.name != keep:
            shutil.rmtree(entry, ignore_errors=True)
            log.info("removed a stale int8 vision tower", extra={"path": str(entry)})
