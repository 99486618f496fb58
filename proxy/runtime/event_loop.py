"""Which event loop a serving process runs: uvloop where it is installed, asyncio's otherwise.

uvloop is a dependency on Linux and macOS (pyproject's environment marker); Windows, and any
platform without a wheel, runs asyncio's own loop. `--event-loop` (or `AOAI_PROXY_EVENT_LOOP`)
chooses: `auto` (the default: uvloop when importable), `uvloop` (exit 2 when it is missing),
`asyncio` (the stock loop, e.g. to rule uvloop out when debugging).

Why uvloop: per upstream piece the proxy pays for wake-ups, reads and writes more than for
anything it does itself, and uvloop does those in C on libuv. Measured numbers are in
bench/README.md ("Levers (issue 14)"). What it changes about memory: it reads plain sockets
into one buffer per loop and hands on bytes of exactly the size that arrived, so a plain
connection allocates nothing per read beyond that copy; its TLS reads still allocate 256 KiB
each (see `process_tuning.py` for why that needs a malloc setting).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

ENV = "AOAI_PROXY_EVENT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")
T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class LoopUnavailable(Exception):
    """`uvloop` was asked for explicitly and cannot be imported."""


def loop_factory(choice: str) -> LoopFactory | None:
    """The factory for `choice`; None means asyncio's own loop."""
    if choice not in CHOICES:
        raise ValueError(f"unknown event loop {choice!r} (choose from {', '.join(CHOICES)})")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError as exc:
        if choice == "uvloop":
            raise LoopUnavailable("uvloop is not installed (pip install uvloop, or choose "
                                  "--event-loop asyncio)") from exc
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """`asyncio.run(main)` on the loop `choice` names."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)


def name_of(loop: asyncio.AbstractEventLoop) -> str:
    """`uvloop` or `asyncio`: what a serving process says it runs."""
    return "uvloop" if type(loop).__module__.split(".")[0] == "uvloop" else "asyncio"
