"""This CPU as Linux's /proc/cpuinfo describes it, and what that means for INT8 products."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from functools import cache
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
VNNI = frozenset({"avx512_vnni", "avx_vnni"})
"""CPU flags of the VNNI instructions, which add int8 products in 32 bits."""
VNNI_FLAGS = VNNI | {"amx_int8"}
"""CPU flags under which ONNX Runtime's uint8 x int8 products are exact."""


def cpuinfo_fields(cpuinfo: Path = CPUINFO) -> dict[str, str]:
    """The first processor's /proc/cpuinfo fields ("model name", "flags", ...), empty where there is no such file."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            fields.setdefault(name.strip(), value.strip())
    return fields


@cache
def products_saturate(cpuinfo: Path = CPUINFO) -> bool:
    """Whether this is an x86 CPU whose flags (read on Linux) show no VNNI. Elsewhere False.

    There ONNX Runtime multiplies uint8 activations by int8 weights with an instruction that adds two products in 16
    bits and saturates (255 x 127 x 2 does not fit), so a quantized file computes other numbers than it was validated
    with, on ONNX Runtime and on DeepSparse alike."""
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return False
    flags = cpuinfo_fields(cpuinfo).get("flags")
    return flags is not None and not VNNI_FLAGS.intersection(flags.split())


def instruction_sets(flags: Sequence[str]) -> str:
    """What decides INT8 speed and exactness, from /proc/cpuinfo's flags: "AVX-512, VNNI", "AVX2, no VNNI", ..."""
    width = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    vnni = "VNNI" if VNNI.intersection(flags) else "no VNNI"
    return f"{width}, {vnni}" + (", AMX" if "amx_int8" in flags else "")


def cpu_name(cpuinfo: Path = CPUINFO) -> str:
    """This CPU's model with its INT8 instruction sets where Linux tells them: "AMD EPYC (AVX2, no VNNI)"."""
    fields = cpuinfo_fields(cpuinfo)
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    flags = fields.get("flags")
    return f"{name} ({instruction_sets(flags.split())})" if flags is not None else name
