"""Process settings for a long-running server: the garbage collector's and glibc malloc's.

Almost everything a request allocates is freed by reference counting the
moment the request ends; the cyclic collector finds little. But with CPython's default gen-0
threshold (700 net container allocations) it still runs every few requests whenever a few
dozen are in flight, and each run walks every live request's objects: a cost per request of
the same order as the whole bare pass-through. With a much higher threshold it runs rarely
and memory stays flat. Freezing what start-up allocated (modules, config, metric children)
keeps the rare full collection from walking it again and again. The figures are in
bench/README.md ("Measurements behind design choices").

malloc: some reads still allocate 256 KiB and shrink the block to what arrived (a few hundred
bytes for an SSE event): on the client side, every TLS read on uvloop (its TLS layer calls
`SSLObject.read(256 KiB)` for protocols like aiohttp's server) and every read on asyncio's own
loop. (Upstream reads do not: the upstream client's protocol reads into one shared buffer,
`proxy.upstream_client.connection`.) glibc puts blocks that
large in the heap once its mmap threshold has risen (it rises by itself when a large mapped
block is freed), and there they fragment it without bound under a soak's traffic. Pinning the
threshold at glibc's own default, 128 KiB, stops it rising: those blocks are always mapped and
unmapped whole and the heap stays flat. Plain sockets on uvloop allocate nothing per read (it
reads into one buffer per loop), so this costs them nothing; on asyncio's own loop each read
pays an mmap/munmap instead. The figures are in bench/README.md ("Levers (issue 14)" and
"Measurements behind design choices").
"""

from __future__ import annotations

import ctypes
import gc

GEN0_THRESHOLD = 10_000
MMAP_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD = -3  # malloc.h


def tune_for_serving() -> None:
    """Call once start-up is done, before traffic arrives."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
    pin_mmap_threshold()


def pin_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """glibc only: True if set (another C library, or Windows, is left as it is)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, size))
