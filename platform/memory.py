"""Keeps a serving process's memory close to what its streams really use, off the event loop.

Two things kept the memory of finished streams (docs/benchmarks.md, "Memory after disconnect
storms"), neither a leak in the sense of objects kept alive:

- cyclic garbage collected late: every PyAV resampler (one per encoder) is a filter graph in a
  reference cycle, and a cut stream's frames sit in cycles with their exceptions' tracebacks.
  They live a few seconds, long enough to reach the collector's oldest generation, which runs
  rarely (it counts objects, not the megabytes of C buffers behind them);
- glibc keeps freed memory: it returns only the top of each per-thread arena, and the free
  chunks sit below live ones. ``malloc_trim(0)`` hands every free page back (``madvise``).

So after streams end, at most every ``TRIM_INTERVAL_S``, a thread runs a full collection and
then trims. The start-up objects (modules, the app, plugins: about 75,000 here) are frozen out
of the collector's view first (``gc.freeze``), which makes a full collection cost about 5 ms
instead of 130 ms on the 2-core VM.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("veena.memory")
TRIM_INTERVAL_S = 2.0
"""At most one collection and trim this often, and only after a stream ended. A trim of
120 MB of free memory took 44 ms on the 2-core VM, on this thread with the GIL released; the
next ones find little to give back. The collection holds the GIL (about 5 ms)."""


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on another C library (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


class HeapTrimmer:
    """A daemon thread that collects garbage and trims the heap every ``interval_s`` while
    that is asked for. ``request()`` only sets a flag (no lock), so it is safe anywhere."""

    def __init__(self, interval_s: float = TRIM_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.trims = 0
        self._trim = _malloc_trim()
        self._wanted = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def available(self) -> bool:
        """Whether this C library can trim (glibc)."""
        return self._trim is not None

    def start(self) -> None:
        """Freezes what exists now out of the collector's view (call it once start-up is
        done; freezing costs microseconds, a collection first would cost 130 ms) and starts
        the thread; does nothing the second time."""
        if self._thread is not None:
            return
        gc.freeze()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="veena-heap-trim", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Asks for a trim within ``interval_s``."""
        self._wanted = True

    def stop(self) -> None:
        """Stops the thread (it exits within ``interval_s``)."""
        self._stop.set()
        self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self._wanted:
                continue
            self._wanted = False
            t0 = time.perf_counter()
            gc.collect()
            if self._trim is not None:
                self._trim(0)
            self.trims += 1
            log.debug("collected and trimmed in %.1f ms", (time.perf_counter() - t0) * 1000)


TRIMMER = HeapTrimmer()
"""The process's trimmer (the heap is the process's), started by the first stream that is
encoded (the warm-up, or the first request): start-up is over by then."""
