"""What a fast-path conversion folder holds and what its graphs' tensors are called (no torch, no ONNX).

`build` writes these names, `engine` feeds and reads them, `cache` recognises a finished conversion by
`META_FILE`: keeping them here lets each of those import the names without importing the others.
"""

from __future__ import annotations

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
META_FILE = "fast.json"  # written last: a folder with it is a complete conversion


def state_names(layers: int) -> tuple[list[str], list[str], list[str]]:
    """The graphs' input/output names of the caches (`inference.fast.graph`): past, cross and present
    keys/values, k before v per layer."""
    def names(prefix: str) -> list[str]:
        return [f"{prefix}_{kind}{i}" for i in range(layers) for kind in ("k", "v")]

    return names("past"), names("cross"), names("present")
