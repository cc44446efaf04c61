"""Which CPUs get 7-bit int8 weights on the fast path (`inference.fast.cpuint8`)."""

from __future__ import annotations

import pytest

from inference.fast.cpuint8 import cpu_flags, int8_products_saturate


def cpuinfo(flags: str) -> str:
    return f"processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\nbugs\t\t: sysret_ss_attrs\n"


AVX2_ONLY = "fpu sse2 ssse3 fma avx f16c avx2"


def test_flags_are_read_from_the_flags_line():
    assert cpu_flags(cpuinfo(AVX2_ONLY)) == frozenset(AVX2_ONLY.split())
    assert cpu_flags("processor\t: 0\nmodel name\t: something\n") is None


@pytest.mark.parametrize("flags, saturates", [
    (AVX2_ONLY, True),  # the AMD EPYC where 12% of beam captions changed
    (AVX2_ONLY + " avx512f avx512bw avx512vl", True),  # AVX-512 without VNNI still multiplies through int16
    (AVX2_ONLY + " avx512f avx512_vnni", False),
    (AVX2_ONLY + " avx_vnni", False),
    (AVX2_ONLY + " avx512f amx_tile amx_int8 amx_bf16", False),
])
def test_x86_cpus_saturate_unless_they_sum_int8_products_in_32_bits(flags, saturates):
    assert int8_products_saturate(cpuinfo(flags), machine="x86_64") is saturates


def test_unknown_x86_flags_count_as_saturating_and_arm_never_does():
    assert int8_products_saturate("processor\t: 0\n", machine="x86_64") is True
    assert int8_products_saturate("processor\t: 0\n", machine="AMD64") is True
    assert int8_products_saturate(cpuinfo(AVX2_ONLY), machine="aarch64") is False
    assert int8_products_saturate(cpuinfo(AVX2_ONLY), machine="arm64") is False
