"""Whether a device computes bf16 natively, and what emulated bf16 costs where it does not.

GPUs since Ampere and CPUs with AVX512-BF16 or AMX (x86) or the BF16 extension (Arm) multiply bf16
in hardware. Elsewhere PyTorch emulates it by converting to fp32 and back around every kernel: on a
2-core Xeon without them a bf16 LoRA step ran at 0.4x fp32's speed (with AMX: 1.3x), and the GPU
check's smoke run took 556 s instead of 35 s. So the checks that only need *a* dtype use fp32 there,
and a training run asked for bf16 on such a CPU says once what it will cost.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch

NATIVE_BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}   # /proc/cpuinfo: x86 "flags", Arm "Features"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags as Linux lists them (empty where there is no /proc/cpuinfo)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.split(":")[0].strip() in ("flags", "Features")
            for flag in line.split(":", 1)[1].split()}


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` multiplies bf16 in hardware (a CPU whose flags cannot be read counts as not)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return True
    return bool(cpu_flags() & NATIVE_BF16_CPU_FLAGS)


def bf16_slowdown(size: int = 512, repeats: int = 3) -> float:
    """How many times longer a (size x size) bf16 matmul takes than the fp32 one on this CPU (best of
    ``repeats``, after a warm-up): the measured cost of emulation, said to the user."""
    def best(dtype: torch.dtype) -> float:
        a, b = (torch.randn(size, size).to(dtype) for _ in range(2))
        a @ b
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - started)
        return min(times)

    return best(torch.bfloat16) / best(torch.float32)


def warn_if_emulated(device: torch.device | str, dtype: torch.dtype) -> None:
    """One warning when ``dtype`` is bf16 on a CPU that emulates it, with the measured cost."""
    device = torch.device(device)
    if dtype != torch.bfloat16 or device.type != "cpu" or native_bf16(device):
        return
    warnings.warn(f"bf16 on this CPU is emulated (no AVX512-BF16, AMX or Arm BF16): a bf16 matmul measured "
                  f"{bf16_slowdown():.1f}x the time of fp32 here; --model.dtype=float32 is likely faster")
