"""Process settings for a long-running server: the garbage collector and glibc's malloc.

Garbage collector. Almost everything a request allocates is freed by reference counting the
moment the request ends; the cyclic collector finds little. But with CPython's default gen-0
threshold (700 net container allocations) it still runs every few requests whenever a few
dozen are in flight, and each run walks every live request's objects: measured on the proxy
at 50 concurrent non-stream requests, 30-60 us of collector time per request (the bare
pass-through: 20 us). With a threshold of 10,000 it ran once in 15,000 requests, and memory
stayed flat. Freezing what start-up allocated (modules, config, metric children: ~40,000
objects) keeps the rare full collection from walking it again and again.

malloc. asyncio reads every socket into a fresh 256 KiB bytes object and shrinks it to what
arrived. glibc serves blocks that large with mmap, unless its dynamic threshold has already
risen past them (it rises when such a block is freed), which depends on the process's
history: in one process each upstream read cost an mmap, an mremap and a munmap, in another
none. Measured on S1-like streams (one event per read): 94 against 70 us of CPU per event
until the threshold was set; then 72. Setting it makes every process take the cheap path.
"""

from __future__ import annotations

import ctypes
import gc

GEN0_THRESHOLD = 10_000
# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 20
"""Blocks under 1 MiB (every socket read buffer) come from the heap, not from mmap."""
TRIM_THRESHOLD = 2 << 20
"""Free memory at the top of the heap kept for reuse before it is returned to the system."""


def tune_for_serving() -> None:
    """Call once start-up is done, before traffic arrives."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
    _set_malloc_thresholds()


def _set_malloc_thresholds() -> None:
    """glibc only; a C library without `mallopt` (macOS) or that ignores it (musl) is left
    as it is."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
