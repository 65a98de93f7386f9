"""What this host is: its CPU (for caches keyed by machine, and benchmark reports), its physical cores, and this
process's memory (current and peak RSS)."""

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


# The instruction sets that change what the runtimes compute, not only how fast: int8 without VNNI saturates in
# 16 bits, OpenVINO's bf16 hint runs f32 without bf16 instructions, AMX tiles round differently.
ARITHMETIC_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
                    "avx512_fp16", "amx_fp16")


def cpu_key() -> str:
    """The CPU for caches of measurements and accuracy verdicts: its model name and arithmetic instruction sets.
    Virtual machines often show only "AMD EPYC" or a generic name, alike for hosts with and without VNNI, bf16 or
    AMX; a verdict measured on one must not be reused on the other."""
    flags = cpu_flags()
    return f"{cpu_model()} [{' '.join(f for f in ARITHMETIC_FLAGS if f in flags) or 'baseline'}]"


def default_threads() -> int:
    """Physical cores: hyper-threads only slow dense matrix work down."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def _proc_status_mb(field: str) -> Optional[float]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def rss_mb() -> Optional[float]:
    """This process's resident memory now (None where /proc is absent)."""
    return _proc_status_mb("VmRSS")


def peak_rss_mb() -> Optional[float]:
    """This process's peak RSS. Not getrusage's ru_maxrss: Linux carries the forking parent's peak across
    exec into it, which would charge every child with the benchmark driver's memory."""
    peak = _proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # elsewhere: the best there is


def return_free_memory() -> None:
    """Hands the C heap's free pages back to the OS (glibc's malloc_trim). A closed runtime session leaves its
    arenas mapped otherwise: after the planner's accuracy gate the shared checkpoint's process held 740 MB against
    310 MB before it, and every later peak stood on top of that."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to do
