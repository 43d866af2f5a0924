"""Keep freed memory in the process instead of handing it back to the OS after every tensor.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves large blocks with ``mmap``
and trims the heap as soon as they are freed, so a loop that frees and re-allocates the same
activations every step or batch pays a page fault per 4 KiB page every time. Serving every block
from the heap (no ``mmap`` for ``malloc``) and keeping freed heap memory (a high trim threshold)
makes glibc reuse those blocks, the CPU counterpart of a GPU caching allocator. The process keeps its
high-water mark instead of returning memory between batches; the peak is unchanged.

It changes ``malloc`` for the whole process, so the ``cnnlab`` command applies it only for the
commands whose loops measured a gain (training and feature extraction: ``transfer``, ``adapt``,
``gan``, ``lab``; the page-fault counts and times are in docs/checks/part_a.md and part_c.md).
A Python program that drives those loops itself can call :func:`retain_freed_memory` once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters from glibc's <malloc.h>
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
TRIM_THRESHOLD_BYTES = 1 << 30  # free memory kept at the heap's top before it is trimmed

_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Tune glibc once per process; True when applied (False on other C libraries / systems)."""
    global _applied
    if _applied is None:
        _applied = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                mallopt = libc.mallopt  # absent from musl: AttributeError
                _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
            except (OSError, AttributeError):
                _applied = False
    return _applied
