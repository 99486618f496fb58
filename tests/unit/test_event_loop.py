"""Which loop a serving process gets for each `--event-loop` choice."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from proxy.runtime import event_loop


async def running_loop() -> str:
    return event_loop.name_of(asyncio.get_running_loop())


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_each_choice_runs_on_its_loop(choice: str, expected: str) -> None:
    assert event_loop.run(running_loop(), choice) == expected


def test_the_stock_choice_is_asyncios_own_loop_class() -> None:
    async def loop_type() -> type[asyncio.AbstractEventLoop]:
        return type(asyncio.get_running_loop())

    assert not issubclass(event_loop.run(loop_type(), "asyncio"), uvloop.Loop)
    assert issubclass(event_loop.run(loop_type(), "uvloop"), uvloop.Loop)


def test_without_uvloop_auto_falls_back_and_an_explicit_ask_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    assert event_loop.loop_factory("auto") is None
    assert event_loop.run(running_loop(), "auto") == "asyncio"
    with pytest.raises(event_loop.LoopUnavailable, match="uvloop is not installed"):
        event_loop.loop_factory("uvloop")


def test_an_unknown_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown event loop 'trio'"):
        event_loop.loop_factory("trio")
