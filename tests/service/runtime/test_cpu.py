"""What /proc/cpuinfo tells: the CPU's name, its INT8 instruction sets, whether its int8 products saturate."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.runtime import cpu
from service.runtime.cpu import cpu_name, cpuinfo_fields, instruction_sets, products_saturate


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: {flags}\n")
    return path


@pytest.mark.parametrize(("flags", "saturate"), [("fpu avx2 fma", True), ("fpu avx2 avx512f avx512_vnni", False),
                                                 ("fpu avx2 avx_vnni", False)])
def test_the_cpu_check_reads_the_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: str,
                                       saturate: bool) -> None:
    monkeypatch.setattr(cpu.platform, "machine", lambda: "x86_64")
    assert products_saturate(_cpuinfo(tmp_path, flags)) == saturate
    assert not products_saturate(tmp_path / "missing")
    monkeypatch.setattr(cpu.platform, "machine", lambda: "aarch64")
    assert not products_saturate(tmp_path / "other")


def test_fields_and_the_cpu_name(tmp_path: Path) -> None:
    cpuinfo = _cpuinfo(tmp_path, "fpu avx2 fma")
    assert cpuinfo_fields(cpuinfo) == {"processor": "0", "model name": "AMD EPYC 7B13", "flags": "fpu avx2 fma"}
    assert cpuinfo_fields(tmp_path / "missing") == {}
    assert cpu_name(cpuinfo) == "AMD EPYC 7B13 (AVX2, no VNNI)"


@pytest.mark.parametrize(("flags", "named"), [
    ("fpu avx2 fma", "AVX2, no VNNI"),
    ("avx2 avx512f avx512_vnni", "AVX-512, VNNI"),
    ("avx2 avx_vnni", "AVX2, VNNI"),
    ("avx2 avx512f avx512_vnni amx_int8", "AVX-512, VNNI, AMX"),
    ("sse4_2", "no AVX2, no VNNI"),
])
def test_the_instruction_sets_that_decide_int8(flags: str, named: str) -> None:
    assert instruction_sets(flags.split()) == named
