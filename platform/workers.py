"""Worker threads for CPU-bound steps of streams, awaited from an event loop, urgent work first."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from collections.abc import Callable
from typing import Any


class PriorityWorkers:
    """``threads`` daemon threads (started on first use) running submitted calls, urgent ones
    (a stream's first bytes) before the rest, each kind in submission order.

    Lighter than ``loop.run_in_executor``: a result goes straight into the caller's asyncio
    future with one ``call_soon_threadsafe``, with no ``concurrent.futures.Future`` between."""

    def __init__(self, threads: int, name: str) -> None:
        self.threads = max(1, threads)
        self.name = name
        self._heap: list[tuple[int, int, Callable[[Any], Any], Any, asyncio.Future[Any]]] = []
        self._cond = threading.Condition()
        self._order = itertools.count()
        self._started = False

    def _start(self) -> None:
        with self._cond:
            if self._started:
                return
            self._started = True
        for i in range(self.threads):
            threading.Thread(target=self._work, daemon=True, name=f"{self.name}-{i}").start()

    def run(self, fn: Callable[[Any], Any], arg: Any, *, urgent: bool) -> asyncio.Future[Any]:
        """A future for ``fn(arg)`` run on a worker thread. Cancelling the future does not stop
        a call already running; its result is then dropped."""
        if not self._started:
            self._start()
        future = asyncio.get_running_loop().create_future()
        with self._cond:
            heapq.heappush(self._heap, (0 if urgent else 1, next(self._order), fn, arg, future))
            self._cond.notify()
        return future

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                _, _, fn, arg, future = heapq.heappop(self._heap)
            if future.cancelled():
                continue
            try:
                result, error = fn(arg), None
            except BaseException as exc:  # handed to the caller; the worker carries on
                result, error = None, exc
            try:
                future.get_loop().call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the caller's loop is closed: nobody is waiting
                pass


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
