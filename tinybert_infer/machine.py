"""What this host is: its CPU (for caches keyed by machine, and benchmark reports) and its physical cores."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Optional


def _cpuinfo_field(name: str) -> Optional[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == name:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set:
    return set((_cpuinfo_field("flags") or "").split())


BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_has_bf16() -> bool:
    """bf16 arithmetic in hardware; without it OpenVINO's bf16 hint quietly runs f32."""
    return bool(cpu_flags() & BF16_FLAGS)


def cpu_model() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def default_threads() -> int:
    """Physical cores: hyper-threads only slow dense matrix work down."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1
