"""How the C library hands memory to torch's CPU tensors: ``train.cpu_allocator`` (tuned | system).

torch's CPU tensors come from the C library's ``malloc``. glibc serves a request larger than its *mmap threshold*
(128 KiB at start) with a fresh ``mmap`` and gives it back to the kernel on ``free``; it returns free memory at
the top of its heap to the kernel once more than the *trim threshold* (256 KiB at start) is free. The thresholds
grow on their own as large blocks come and go, but the free memory above the trim threshold is still returned.
A training step frees and re-allocates the same large activations and gradients every step (the demo SAVi's
decoder: several 12 MiB tensors per layer), so each step faults those pages in again and the kernel zeroes every
one of them (the page faults of a whole step's activations; ``benchmarks/bench_cpu.py --processes`` measures what
that costs).

``tuned`` (the default) fixes the mmap threshold at 32 MiB (the largest value every glibc accepts: blocks up to
that size come from the heap) and the trim threshold at 1 GiB (up to that much free heap is kept for the next
step), so a steady-state step reuses the pages of the previous one. The cost is resident memory: a process
keeps up to 1 GiB of freed heap instead of returning it. Results do not change (allocation only). The settings
are process-wide, made once per process by :func:`tune_cpu_allocator` (the trainer calls it for CPU runs);
``system`` leaves the C library as it is. On a C library other than glibc (macOS, musl) there is nothing to tune:
the run logs ``cpu_allocator=system``.
"""

from __future__ import annotations

import ctypes
import platform

ALLOCATORS = ("tuned", "system")

# mallopt(3) parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: older glibc versions refuse more
TRIM_THRESHOLD = 1024 * 1024 * 1024


def glibc() -> ctypes.CDLL | None:
    """The process's glibc, or None when the C library is another one."""
    name, _version = platform.libc_ver()
    if name != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def tune_cpu_allocator(mode: str) -> str:
    """Apply ``train.cpu_allocator`` to this process; returns one line for the run's log."""
    if mode not in ALLOCATORS:
        raise ValueError(f"train.cpu_allocator={mode!r}: choose one of {', '.join(ALLOCATORS)}")
    if mode == "system":
        return "system"
    libc = glibc()
    if libc is None:
        return f"system (tuned needs glibc; this C library is {platform.libc_ver()[0] or 'unknown'})"
    # either call also turns off glibc's own threshold adjustment, so both values hold from here on
    ok = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    if not ok:
        return "system (glibc refused the thresholds)"
    return f"tuned (glibc: mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold {TRIM_THRESHOLD >> 30} GiB)"
