"""Process settings for a long-running server: the garbage collector's.

Almost everything a request allocates is freed by reference counting the
moment the request ends; the cyclic collector finds little. But with CPython's default gen-0
threshold (700 net container allocations) it still runs every few requests whenever a few
dozen are in flight, and each run walks every live request's objects: a cost per request of
the same order as the whole bare pass-through. With a much higher threshold it runs rarely
and memory stays flat. Freezing what start-up allocated (modules, config, metric children)
keeps the rare full collection from walking it again and again. The figures are in
bench/README.md ("Measurements behind design choices").

(glibc's malloc needed no setting once socket reads stopped allocating a large block each:
see `receive_buffer.py`.)
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 10_000


def tune_for_serving() -> None:
    """Call once start-up is done, before traffic arrives."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)

