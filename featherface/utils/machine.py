"""The machine a figure was measured on: CPU model and the instruction set torch dispatches to.

Training is bit-reproducible on one CPU type only (kernels and float rounding differ between,
say, AVX2 and AVX-512), so every training stage records these next to its metrics.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`), or
    ``unknown``."""
    try:
        for line in CPUINFO.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, str]:
    """``cpu`` (:func:`cpu_model`) and ``torch_cpu_capability`` (the vector instruction set
    torch's CPU kernels use here, such as ``AVX2`` or ``AVX512``)."""
    return {
        "cpu": cpu_model(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
