"""Serving-process settings, checked in a fresh interpreter (they are process-wide)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import gc, json
from proxy.runtime.process_tuning import GEN0_THRESHOLD, tune_for_serving
tune_for_serving()
print(json.dumps({"gen0": gc.get_threshold()[0], "frozen": gc.get_freeze_count(),
                  "expected_gen0": GEN0_THRESHOLD}))
"""


def test_tuning_freezes_start_up_objects_and_raises_the_gen0_threshold() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=60, check=True)
    seen = json.loads(out.stdout)
    assert seen["gen0"] == seen["expected_gen0"] == 10_000
    assert seen["frozen"] > 1000, "start-up objects should be frozen"
    assert out.stderr == ""


MALLOC_PROBE = """
import ctypes, json, sys
from proxy.runtime.process_tuning import tune_for_serving

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
if sys.argv[1] == "tuned":
    tune_for_serving()
big = bytearray(1 << 20)
del big  # freeing a mapped 1 MiB block raises glibc's threshold past it, unless pinned
before = mallinfo2().hblkhd
read = bytearray(256 * 1024)  # the size of a TLS read's buffer on uvloop
print(json.dumps({"mapped": mallinfo2().hblkhd - before}))
"""


def mapped_by_a_256_kib_block(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", MALLOC_PROBE, mode], capture_output=True,
                         text=True, timeout=60, check=True)
    return int(json.loads(out.stdout)["mapped"])


def test_a_256_kib_read_buffer_is_mapped_whole_never_carved_from_the_heap() -> None:
    """glibc (the Linux images): what keeps the soak's heap flat over TLS on uvloop."""
    assert mapped_by_a_256_kib_block("tuned") >= 256 * 1024
    # The control: without the setting, glibc's own rule puts the same block in the heap.
    assert mapped_by_a_256_kib_block("untuned") == 0
