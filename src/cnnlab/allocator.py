"""Keep freed memory in the process instead of handing it back to the OS after every tensor.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves large blocks with ``mmap``
and trims the heap as soon as they are freed, so a training loop that frees and re-allocates the
same few-MB activations every step pays a page fault per 4 KiB page every step (thousands per DANN
step on this project's VMs: 10–15% of its time). Raising glibc's mmap and trim thresholds makes it
reuse those blocks, the CPU counterpart of a GPU caching allocator. Peak memory is unchanged: only
memory the process already used is kept.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters from glibc's <malloc.h>
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 256 << 20  # blocks below this come from the reusable heap
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
                _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and \
                    bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
            except (OSError, AttributeError):
                _applied = False
    return _applied
