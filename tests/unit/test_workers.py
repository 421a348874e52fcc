"""PriorityWorkers: urgent calls first, results and errors reach the awaiting coroutine."""

from __future__ import annotations

import asyncio
import threading

import pytest

from veena.platform.workers import PriorityWorkers


def test_urgent_calls_run_before_queued_later_ones() -> None:
    asyncio.run(_urgent_calls_run_before_queued_later_ones())


async def _urgent_calls_run_before_queued_later_ones() -> None:
    workers = PriorityWorkers(1, "test-workers")
    gate = threading.Event()
    order: list[str] = []

    def blocked(_: None) -> None:
        gate.wait(5)

    first = workers.run(blocked, None, urgent=False)  # holds the only thread
    later = [workers.run(order.append, f"later{i}", urgent=False) for i in range(3)]
    urgent = [workers.run(order.append, f"urgent{i}", urgent=True) for i in range(2)]
    gate.set()
    await asyncio.gather(first, *later, *urgent)
    assert order == ["urgent0", "urgent1", "later0", "later1", "later2"]


def test_results_errors_and_thread_names() -> None:
    asyncio.run(_results_errors_and_thread_names())


async def _results_errors_and_thread_names() -> None:
    workers = PriorityWorkers(2, "test-pool")
    assert await workers.run(lambda x: x * 2, 21, urgent=True) == 42
    names = await asyncio.gather(*[workers.run(lambda _: threading.current_thread().name, None,
                                               urgent=False) for _ in range(8)])
    assert set(names) <= {"test-pool-0", "test-pool-1"}
    with pytest.raises(ZeroDivisionError):
        await workers.run(lambda x: 1 / x, 0, urgent=False)
    assert await workers.run(str, 7, urgent=False) == "7"  # the worker outlived the error


def test_a_cancelled_call_that_has_not_started_is_skipped() -> None:
    asyncio.run(_a_cancelled_call_that_has_not_started_is_skipped())


async def _a_cancelled_call_that_has_not_started_is_skipped() -> None:
    workers = PriorityWorkers(1, "test-cancel")
    gate = threading.Event()
    ran: list[int] = []
    busy = workers.run(lambda _: gate.wait(5), None, urgent=True)
    queued = workers.run(ran.append, 1, urgent=True)
    queued.cancel()
    gate.set()
    await busy
    await workers.run(ran.append, 2, urgent=True)
    assert ran == [2]


def test_results_for_a_closed_loop_are_dropped() -> None:
    workers = PriorityWorkers(1, "test-closed")
    gate = threading.Event()
    done = threading.Event()

    async def submit() -> None:
        workers.run(lambda _: gate.wait(5), None, urgent=True)

    asyncio.run(submit())  # the loop closes while the call still runs
    gate.set()
    # The worker survives the closed loop and serves the next caller.
    assert asyncio.run(_call(workers, done.set)) is None
    assert done.is_set()


async def _call(workers: PriorityWorkers, fn) -> object:
    return await workers.run(lambda _: fn(), None, urgent=False)
