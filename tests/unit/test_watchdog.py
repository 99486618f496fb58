"""The shared watchdog: guards fire on a synthetic clock (`fire_if_due(now)` is called directly;
the ticker itself is set far beyond the test's length, so no test depends on real time)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from proxy.relay.watchdog import Watch, Watchdog, tick_for


async def guarded(dog: Watchdog, arm: Callable[[Watch], None],
                  ) -> tuple[asyncio.Task[str], Watch, asyncio.Event]:
    """A task that arms a guard and waits; it reports how its wait ended."""
    release = asyncio.Event()
    armed: asyncio.Future[Watch] = asyncio.get_running_loop().create_future()

    async def body() -> str:
        watch = dog.watch()
        arm(watch)
        armed.set_result(watch)
        try:
            await release.wait()
        except asyncio.CancelledError:
            if watch.expired():
                return "timed out"
            raise
        finally:
            watch.clear()
        return "released"

    task = asyncio.create_task(body())
    return task, await armed, release


async def test_response_guard_fires_at_its_deadline_and_not_before() -> None:
    dog = Watchdog(tick=3600)
    dog.start()
    before = dog.now()
    task, watch, _ = await guarded(dog, lambda w: w.expect_response(5.0))
    after = dog.now()
    assert not watch.fire_if_due(before + 4.9)
    assert watch.fire_if_due(after + 5.0)
    assert await task == "timed out"
    assert task.cancelling() == 0  # the guard took its own cancellation back
    assert not dog.watches
    dog.stop()


async def test_idle_guard_counts_quiet_time_from_the_last_piece_or_write() -> None:
    dog = Watchdog(tick=3600)
    dog.start()
    start = dog.now()
    task, watch, release = await guarded(dog, lambda w: w.expect_pieces(2.0))
    watch.pieces += 1
    assert not watch.fire_if_due(start + 1.5)  # a piece came: quiet from here
    assert not watch.fire_if_due(start + 3.4)
    watch.writing = True  # waiting on a slow client is not upstream silence
    assert not watch.fire_if_due(start + 30.0)
    watch.writing = False
    assert not watch.fire_if_due(start + 31.9)
    assert watch.fire_if_due(start + 32.0)
    assert await task == "timed out"
    release.set()
    dog.stop()


async def test_a_cancellation_from_elsewhere_wins_over_the_guard() -> None:
    dog = Watchdog(tick=3600)
    dog.start()
    task, watch, _ = await guarded(dog, lambda w: w.expect_response(1.0))
    task.cancel()  # the client left
    assert watch.fire_if_due(dog.now() + 1.0)  # and the guard fired in the same instant
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the task should have stayed cancelled")
    dog.stop()


async def test_a_cleared_guard_is_not_checked_and_the_task_ends_normally() -> None:
    dog = Watchdog(tick=3600)
    dog.start()
    task, watch, release = await guarded(dog, lambda w: w.expect_response(1.0))
    assert dog.watches == {watch}
    release.set()
    assert await task == "released"
    assert not dog.watches
    dog.stop()


async def test_the_ticker_checks_armed_guards() -> None:
    dog = Watchdog(tick=0.01)
    dog.start()
    task, _, _ = await guarded(dog, lambda w: w.expect_response(0.0))
    assert await asyncio.wait_for(task, 5) == "timed out"
    dog.stop()


def test_tick_is_a_tenth_of_the_shortest_timeout_within_bounds() -> None:
    assert tick_for(600.0, 300.0) == 1.0
    assert tick_for(600.0, 0.5) == 0.05
    assert tick_for(0.01, 5.0) == 0.01
