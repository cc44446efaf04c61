"""Captioner specs the tests use besides the served default (`inference.spec.CaptionerSpec()`)."""

from __future__ import annotations

from dataclasses import replace

from inference.spec import CaptionerSpec
from inference.types import GenerationOptions

# Plain transformers: the exact engine on the CPU, greedy search (`GenerationOptions()`); what a test
# comparing with `generate`, or measuring what a model learned, captions with.
EXACT_GREEDY = CaptionerSpec(device="cpu", precision="exact", options=GenerationOptions())


def exact_greedy(**changes) -> CaptionerSpec:
    """`EXACT_GREEDY` with `changes` (e.g. batch_size=64, options=...)."""
    return replace(EXACT_GREEDY, **changes)


def fast_greedy(**changes) -> CaptionerSpec:
    """The CPU fast path (int8 graphs), greedy search, one thread unless `changes` say otherwise."""
    return replace(EXACT_GREEDY, **{"precision": "fast", "threads": 1, **changes})
