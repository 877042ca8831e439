"""What the benchmarks print about the machine they ran on: CPU, cores, load, relevant flags."""

from __future__ import annotations

import os
import platform
from pathlib import Path

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
"""CPU flags that matter for encoder inference: native bf16 needs avx512_bf16 or amx_bf16; int8
matrix products run fastest with VNNI or AMX and still pay on AVX2."""


def cpu_flags() -> set[str]:
    """The flags of the first CPU in /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:  # pragma: no cover - not Linux
        pass
    return set()


def native_bf16() -> bool:
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - platforms without getloadavg
        return "n/a"


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children so far.

    A run's CPU time hardly depends on how busy the machine is, unlike its wall time: on a quiet
    machine the wall time is about CPU time / cores for work spread over every core.
    """
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cpu_report() -> str:
    """Two lines: model, cores and load; the flags of :data:`FLAGS` present, native bf16 or not."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:  # pragma: no cover - not Linux
        pass
    flags = cpu_flags()
    present = [f for f in FLAGS if f in flags]
    return (
        f"cpu: {model}; {len(os.sched_getaffinity(0))} cores; load {load()}\n"
        f"cpu flags: {' '.join(present) or '(none of ' + ' '.join(FLAGS) + ')'}; "
        f"native bf16: {'yes' if native_bf16() else 'no'}"
    )
