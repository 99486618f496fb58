"""A finished stream's observing state is freed by reference counting alone.

A serving process runs the cyclic garbage collector rarely (proxy/runtime/process_tuning.py),
so anything per stream that sits in a reference cycle (say, a bound method stored on its own
object) would stay allocated long after its stream ended, growing memory under load.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from proxy.observe.reading import Semantics
from proxy.observe.responses import RESPONSES
from proxy.observe.semantics import CHAT
from proxy.observe.tap import StreamTap
from proxy.relay.usage_strip import UsageStripper

STREAMS = Path(__file__).parents[1] / "data" / "streams"


def pieces(data: bytes) -> list[bytes]:
    """One event per piece, then a piece with several and one cut mid-event."""
    events = [e + b"\n\n" for e in data.split(b"\n\n") if e]
    return [*events[:-4], b"".join(events[-4:-2])[:-7], b"".join(events[-4:-2])[-7:],
            *events[-2:]]


def observe(data: bytes, semantics: Semantics) -> None:
    tap = StreamTap(1 << 20, semantics)
    stripper = UsageStripper()
    for piece in pieces(data):
        stripper.feed(piece)
        tap.feed(piece)
    stripper.flush()
    assert tap.finish().events > 0


@pytest.mark.parametrize("name", sorted(p.name for p in STREAMS.glob("*.sse")))
def test_observer_tap_and_stripper_leave_no_cycle(name: str) -> None:
    data = (STREAMS / name).read_bytes()
    semantics = RESPONSES if name.startswith("responses") else CHAT
    # Once first: compiling a template's patterns (once per shape, then cached) leaves
    # garbage of `re`'s own parser, which is not per stream.
    observe(data, semantics)
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            observe(data, semantics)
        assert gc.collect() == 0, "per-stream state left in a reference cycle"
    finally:
        gc.enable()


def test_a_broken_tap_also_lets_go_of_its_templates() -> None:
    data = (STREAMS / "azure-default-gpt-4o-mini.sse").read_bytes()
    observe(data, CHAT)
    gc.collect()
    gc.disable()
    try:
        tap = StreamTap(1 << 20, CHAT)
        events = pieces(data)
        for piece in events[:5]:
            tap.feed(piece)
        tap._broken = True  # as after an observer bug: finish() does not close the observer
        assert tap.finish().parse_errors == 1
        del tap
        assert gc.collect() == 0
    finally:
        gc.enable()
