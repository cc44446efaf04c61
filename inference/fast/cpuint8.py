"""Whether this CPU's int8 matrix products can saturate, which decides how the fast path quantises weights.

ONNX Runtime's dynamic int8 MatMul multiplies uint8 activations by int8 weights. With VNNI (AVX-512 VNNI,
AVX-VNNI) or AMX the CPU sums those products in 32 bits. Without them, x86 kernels fall back to AVX2's
`vpmaddubsw`, which adds two products into a saturating int16: 255 x 127 x 2 overflows it, and the clipped
sums changed 12% of beam-search captions on an AVX2-only EPYC (docs/performance.md). Weights quantised to
7 bits (`reduce_range`) keep every pair below the int16 limit. ARM's dot-product kernels do not saturate.
"""

from __future__ import annotations

import platform
from pathlib import Path

# /proc/cpuinfo flags of the instructions that sum int8 products without an int16 step.
INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
_X86 = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str) -> frozenset[str] | None:
    """The feature flags of the first CPU listed in a /proc/cpuinfo text (None when it lists none)."""
    for line in cpuinfo.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == "flags":
            return frozenset(value.split())
    return None


def int8_products_saturate(cpuinfo: str | None = None, machine: str | None = None) -> bool:
    """Whether dynamic int8 MatMuls on this CPU (or the one `cpuinfo`/`machine` describe) can saturate.

    An x86 CPU whose flags cannot be read (no /proc/cpuinfo, e.g. macOS) counts as saturating: 7-bit
    weights are correct everywhere, 8-bit ones only where the products are summed in 32 bits.
    """
    if (machine or platform.machine()).lower() not in _X86:
        return False
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(errors="replace")
        except OSError:
            return True
    flags = cpu_flags(cpuinfo)
    return flags is None or not (flags & INT8_DOT_FLAGS)
