"""timer1.util.precision: which CPUs compute bf16 natively, and the one warning a bf16 run on an emulating
CPU gets (issue 41, build 5)."""

import warnings

import pytest
import torch

from timer1.util import precision

X86_WITH = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile\n"
X86_WITHOUT = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\nbugs\t\t: spectre_v1\n"
ARM_WITH = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize("cpuinfo, native", [(X86_WITH, True), (X86_WITHOUT, False), (ARM_WITH, True), ("", False)])
def test_native_bf16_reads_the_cpu_flags(cpuinfo, native, tmp_path, monkeypatch):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    flags = precision.cpu_flags(path)
    assert ("avx512_bf16" in flags) == ("avx512_bf16" in cpuinfo) and "processor" not in flags
    assert precision.cpu_flags(tmp_path / "absent") == set()
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    assert precision.native_bf16("cpu") is native


def test_bf16_on_an_emulating_cpu_warns_once_with_the_measured_cost(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: set())
    monkeypatch.setattr(precision, "bf16_slowdown", lambda: 4.25)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        precision.warn_if_emulated("cpu", torch.bfloat16)
        precision.warn_if_emulated("cpu", torch.float32)        # fp32: nothing to say
    assert [str(w.message) for w in caught] == [
        "bf16 on this CPU is emulated (no AVX512-BF16, AMX or Arm BF16): a bf16 matmul measured 4.2x the time of "
        "fp32 here; --model.dtype=float32 is likely faster"]


def test_the_slowdown_is_a_measured_ratio():
    ratio = precision.bf16_slowdown(size=64, repeats=2)
    assert 0.05 < ratio < 100
