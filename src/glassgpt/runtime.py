"""Where and how tensors run: device, precision, threads, and a description of the CPU.

Automatic precision picks bf16 only where it is fast: on CUDA with bf16 support, and on
CPUs with native bf16 instructions (AVX-512 BF16 or AMX). On AVX2-only CPUs a bf16
matmul is ~100x slower than fp32, so fp32 is chosen there.
"""
from __future__ import annotations

import contextlib
import os
import platform

import torch

from .errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def pick_device(requested: str = "auto") -> torch.device:
    """'auto' -> cuda if available, else mps, else cpu."""
    if requested != "auto":
        try:
            device = torch.device(requested)
        except RuntimeError as e:
            raise ConfigError(f"unknown device {requested!r}: use auto, cpu, cuda, cuda:N or mps") from e
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("CUDA was requested but is not available: use --device cpu")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ConfigError("MPS was requested but is not available: use --device cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 matmuls natively (AVX-512 BF16 or AMX)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def pick_precision(device: torch.device, requested: str = "auto") -> str:
    """Resolve 'auto' to the fastest safe autocast precision for `device`."""
    if requested not in PRECISIONS:
        raise ConfigError(f"unknown precision {requested!r}: use one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def autocast(device: torch.device, precision: str):
    """A context manager running matmuls in `precision` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=device.type, dtype=dtype)


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(int(n))


def cpu_description() -> str:
    """CPU model name and the SIMD flags that matter for speed, for benchmark headers."""
    model = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("", platform.machine(), "x86_64"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    wanted = ["avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"]
    present = [w for w in wanted if w in flags]
    return (f"{model}; {os.cpu_count()} cores; flags: {' '.join(present) or 'n/a'}; "
            f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}); "
            f"native bf16: {cpu_has_native_bf16()}")
