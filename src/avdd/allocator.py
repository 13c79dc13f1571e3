"""Keep freed CPU memory in the process for reuse instead of handing it back to the OS (glibc).

glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh mapping and
unmaps it on free, and trims free memory at the top of the heap beyond 128 KB. Activations of
224×224 frames are hundreds of MB per batch, so each forward pass faults in, and the kernel zeroes,
gigabytes of new pages: at the reference shapes this was 40 % of the CPU time of a DM iteration
(benchmarks/RESULTS.md). Served from the heap and never trimmed, those pages are reused by the
next iteration. The cost: the process keeps its high-water mark of memory until it exits, which
is what peak memory already measures.
"""

from __future__ import annotations

import ctypes
import sys

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # the largest value mallopt's int parameter takes


def retain_freed_memory() -> bool:
    """Tell glibc's malloc to serve large blocks from the heap and keep freed memory.

    Affects the whole process. Returns False, changing nothing, where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None)  # the C library this process already runs on
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: mallopt's numbers differ
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
