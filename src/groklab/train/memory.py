"""Keep freed memory in the process, so a training step does not page-fault its activations in.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves a block above its mmap
threshold (128 KiB at first, raised adaptively up to 32 MiB) with a fresh ``mmap`` and returns it
to the kernel when it is freed, and it trims the top of its heap once more than the trim threshold
is free. A full-batch step allocates the same few-megabyte activations every step (3,830 × 512
floats for Nanda's MLP layer: 7.8 MB), so each step faults every page of them in again and the
kernel zeroes each page first: element-wise kernels (ReLU, its backward, the gathers) then run at
page-fault speed, not memory speed. Raising both thresholds makes freed blocks stay in the heap
for the next step. The numbers are unchanged (allocation only); memory the process once used is
kept until it exits, up to ``trim_mib``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_done = False


def keep_freed_memory(mmap_mib: int = 256, trim_mib: int = 1024) -> bool:
    """Raise glibc's mmap threshold to ``mmap_mib`` and its trim threshold to ``trim_mib``, once
    per process. Returns whether the setting is in effect (False off Linux/glibc)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, mmap_mib << 20)) and bool(mallopt(M_TRIM_THRESHOLD, trim_mib << 20))
    return _done
