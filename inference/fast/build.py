"""Convert a model directory into the fast path's ONNX graphs: `python -m inference.fast.build MODEL_DIR OUT_DIR`.

Run by `inference.fast.cache` in a child process. Steps:
1. load the fp32 model from the directory (`inference.ved.load_model`, as the exact engine does);
2. export `EncoderGraph` and `DecoderStep` (`inference.fast.graph`) with the TorchScript exporter
   (`dynamo=False`, opset 17; optimum's exporters pin transformers below 5);
3. quantise every weight matrix to int8, attention products and softmax stay fp32:
   - encoder: ONNX Runtime dynamic quantisation (int8 weights per output channel, activations quantised
     per call over the whole input; the engine runs it one image at a time, so an image's features never
     depend on the other images of a batch); 7-bit weights (`reduce_range`) on CPUs whose int8 products
     saturate (`inference.fast.cpuint8`; the caller decides, since the choice is part of the conversion's key);
   - decoder: `MatMulNBits` with 8-bit weights in blocks of 32 and int8 compute (accuracy level 4), whose
     activations are quantised per row and block: a caption never depends on the other captions of its
     batch (micro-batching must not change anyone's caption), and beam search kept 97.5% of the exact
     captions against 93.5% with per-tensor activations (docs/performance.md); the token embedding
     (a Gather) is then quantised to int8 as well;
4. write `fast.json` (`layout.META_FILE`) describing the graphs' shapes and special tokens.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch
from transformers import VisionEncoderDecoderModel

from inference import ved
from inference.fast.graph import DecoderStep, EncoderGraph
from inference.fast.layout import DECODER_FILE, ENCODER_FILE, META_FILE, state_names

OPSET = 17


def export_graphs(model: VisionEncoderDecoderModel, out_dir: Path) -> dict:
    """Export encoder and decoder step of `model` (fp32, eval) as encoder.onnx and decoder.onnx; return shapes."""
    config = model.config
    size = config.encoder.image_size
    channels = config.encoder.num_channels
    pixels = torch.zeros(2, channels, size, size)
    with torch.inference_mode():
        cross = [t.clone() for t in EncoderGraph(model)(pixels)]
    layers = len(cross) // 2
    _, heads, tokens, head_dim = cross[0].shape
    past_names, cross_names, present_names = state_names(layers)
    with torch.no_grad():
        torch.onnx.export(
            EncoderGraph(model), (pixels,), str(out_dir / ENCODER_FILE), dynamo=False, opset_version=OPSET,
            input_names=["pixel_values"], output_names=cross_names,
            dynamic_axes={"pixel_values": {0: "images"}, **{name: {0: "images"} for name in cross_names}},
        )
        ids = torch.zeros(4, dtype=torch.long)  # 2 images x 2 beams, 3 tokens already cached
        past = [torch.zeros(4, heads, 3, head_dim) for _ in past_names]
        torch.onnx.export(
            DecoderStep(model), (ids, *past, *cross), str(out_dir / DECODER_FILE), dynamo=False,
            opset_version=OPSET, input_names=["input_ids", *past_names, *cross_names],
            output_names=["logprobs", *present_names],
            dynamic_axes={"input_ids": {0: "rows"}, "logprobs": {0: "rows"},
                          **{name: {0: "rows", 2: "cached"} for name in past_names},
                          **{name: {0: "images"} for name in cross_names},
                          **{name: {0: "rows", 2: "grown"} for name in present_names}},
        )
    return {"layers": layers, "heads": heads, "image_tokens": tokens, "head_dim": head_dim,
            "image_size": size, "channels": channels, "vocab_size": config.decoder.vocab_size,
            "max_positions": config.decoder.n_positions}


def quantize_graph(src: Path, dst: Path, op_types: tuple[str, ...] = ("MatMul", "Gather"), *,
                   reduce_range: bool = False) -> None:
    """Dynamic int8: weights per output channel for every MatMul with a constant weight (and Gather tables);
    activations quantised per call over the whole tensor. `reduce_range`: weights in 7 bits."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range,
                     op_types_to_quantize=list(op_types),
                     extra_options={"MatMulConstBOnly": True, "DefaultTensorType": 1})  # 1: float, for com.microsoft ops


def quantize_rowwise(src: Path, dst: Path) -> None:
    """8-bit blockwise weights with per-row activation quantisation (`MatMulNBits`), then int8 Gather tables."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), bits=8, block_size=32, is_symmetric=True, accuracy_level=4)
    quantizer.process()
    blockwise = dst.with_suffix(".blockwise.onnx")
    quantizer.model.save_model_to_file(str(blockwise), use_external_data_format=False)
    quantize_graph(blockwise, dst, op_types=("Gather",))
    blockwise.unlink()


def build(model_dir: Path, out_dir: Path, *, quantize: bool = True, reduce_range: bool = False) -> dict:
    """Export (and quantise) `model_dir`'s model into `out_dir`; returns what fast.json records.
    `reduce_range`: the encoder's int8 weights in 7 bits (for CPUs whose int8 products saturate)."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = ved.load_model(model_dir, dtype=torch.float32)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / "fp32" if quantize else out_dir
    raw.mkdir(exist_ok=True)
    with warnings.catch_warnings():
        # The tracer warns about shape checks it freezes (the image size, fixed by the image processor) and
        # the step's position, which the fp32 graph tests show stays dynamic.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        shapes = export_graphs(model, raw)
    if quantize:
        quantize_graph(raw / ENCODER_FILE, out_dir / ENCODER_FILE, reduce_range=reduce_range)
        quantize_rowwise(raw / DECODER_FILE, out_dir / DECODER_FILE)
        for leftover in raw.iterdir():
            leftover.unlink()
        raw.rmdir()
    meta = {"format": 1, "quantized": quantize, "reduce_range": quantize and reduce_range, **shapes}
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--no-quantize", action="store_true", help="keep fp32 weights (tests of the graphs)")
    parser.add_argument("--reduce-range", action="store_true", help="7-bit encoder weights (CPUs without VNNI)")
    args = parser.parse_args(argv)
    build(args.model_dir, args.out_dir, quantize=not args.no_quantize, reduce_range=args.reduce_range)
    return 0


if __name__ == "__main__":
    sys.exit(main())
