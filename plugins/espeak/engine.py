"""The threaded eSpeak NG engine: fair scheduling of many requests over a few library copies.

Each request (``EngineStream``) is a queue of small work items (a clause or a sentence). One
worker thread per library copy takes one item at a time:

- requests that have produced no audio yet go first (time to first byte), then the others
  round-robin, one item per turn, so a long request never holds the engine for long;
- while other new requests wait, a new request's first turn is only a taste: about
  ``first_audio_ms`` of audio, cut where the next word starts (eSpeak NG's word events); the rest
  of that item is synthesized afresh from that word in its next turn. eSpeak NG takes ~1 ms to
  its first audio but ~10-60 ms for a whole sentence, so a burst of N new requests gets its
  first audio after N tastes rather than N sentences. The restart begins a new intonation
  phrase, so the seam can be heard; a request that finds no queue is never cut;
- a request has at most one item in synthesis, so its audio stays in order;
- a request's first callback buffer goes to its queue at once, later audio in blocks of about
  ``block_ms`` (``BlockSender``); the request's event loop is woken unless a wake-up is
  already due; a cancelled request aborts at the next callback (return 1);
- a request more than ``max_ahead_s`` of audio ahead of its consumer is parked until the
  consumer catches up, so a slow client never makes audio pile up in memory.

Nothing here blocks an event loop: the loop side only appends to deques and takes a lock that
workers hold for a few deque operations, never during synthesis.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from veena.plugins.espeak.library import EspeakLibrary, acquire_libraries, has_variant, release_libraries

log = logging.getLogger("veena.espeak")


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One piece of text of chunk ``chunk``, read with ``voice``; ``offset``: where ``text``
    starts in the chunk's cleaned text (``text.clean``)."""

    chunk: int
    text: str
    voice: str
    offset: int = 0


@dataclass(frozen=True, slots=True)
class Marks:
    """Word starts of one work item, sent after its audio (for requests that asked for them):
    ``words`` are (character index in the chunk's cleaned text, length, sample from the item's
    first sample); the item made ``samples`` samples."""

    chunk: int
    words: list[tuple[int, int, int]]
    samples: int


DONE, ABORTED, CUT = "done", "aborted", "cut"


class End:
    """Marks the end of a request's audio."""


END = End()


class Channel:
    """What a worker sends a request's consumer: audio blocks ``(chunk, samples)``, then ``END``
    or an exception. The consumer may peek at the next one.

    Workers append from their own thread (deque appends are atomic) and wake the consumer's
    loop only when no wake-up is due already, so the buffers eSpeak NG makes while the loop is
    busy cost one cross-thread call (a pipe write, a loop iteration), not one each."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._wake_due = False

    def put(self, message: Any) -> None:  # on a worker thread
        """Queues ``message``; RuntimeError when the consumer's loop is closed."""
        self.items.append(message)
        if not self._wake_due:
            self._wake_due = True
            self.loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:  # on the loop thread
        # Cleared before the waiter is woken: anything appended after this line schedules a
        # new wake-up, anything appended before it is seen when the consumer resumes.
        self._wake_due = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        while not self.items:
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


class EngineStream:
    """One request's state, shared by its consumer (event loop) and the workers."""

    def __init__(self, items: list[WorkItem], rate: int, pitch: int,
                 loop: asyncio.AbstractEventLoop, marks: bool = False) -> None:
        self.items = deque(items)
        self.marks = marks  # send each item's word starts (``Marks``) after its audio
        self.rate = rate
        self.pitch = pitch
        self.channel = Channel(loop)
        self.loop = loop
        self.cancelled = False
        self.ended = False  # the worker sent END or an error and let go of this request
        self.in_flight = False
        self.started = False  # produced audio already
        self.parked = False
        self.produced = 0  # samples sent (worker thread)
        self.consumed = 0  # samples taken (event loop)

    def send(self, message: Any) -> bool:
        """Hands ``message`` to the consumer's loop; False when that loop is gone."""
        try:
            self.channel.put(message)
            return True
        except RuntimeError:  # loop closed: nobody is listening any more
            self.cancelled = True
            return False


class BlockSender:
    """Hands one work item's audio to its request: the request's very first buffer at once
    (time to first byte), later audio in blocks of at least ``block`` samples, and what is
    left when the item ends. eSpeak NG makes a callback buffer in a fraction of a millisecond,
    and every block costs the event loop, the encoder and the socket a fixed price, so one
    block per buffer would make a request cost several times more than needed."""

    def __init__(self, stream: EngineStream, chunk: int, block: int) -> None:
        self.stream, self.chunk, self.block = stream, chunk, block
        self.parts: list[np.ndarray] = []
        self.size = 0

    def send(self, samples: np.ndarray) -> bool:
        """False when the request is gone."""
        first = not self.stream.started
        self.stream.started = True
        self.stream.produced += len(samples)
        self.parts.append(samples)
        self.size += len(samples)
        return self.flush() if first or self.size >= self.block else True

    def flush(self) -> bool:
        if not self.parts:
            return True
        block = self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)
        self.parts, self.size = [], 0
        return self.stream.send((self.chunk, block))


class EspeakEngine:
    """``engines`` private eSpeak NG copies, each driven by one worker thread."""

    def __init__(self, engines: int = 1, buffer_ms: int = 100, max_ahead_s: float = 20.0,
                 first_audio_ms: int = 200, block_ms: int = 500) -> None:
        self._libs = acquire_libraries(engines, buffer_ms)
        self.sample_rate = self._libs[0].sample_rate
        self.block = max(1, block_ms * self.sample_rate // 1000)
        self.max_ahead = int(max_ahead_s * self.sample_rate)
        self.first_audio = first_audio_ms * self.sample_rate // 1000
        self._cond = threading.Condition()
        self._fresh: deque[EngineStream] = deque()  # no audio yet: served first
        self._running: deque[EngineStream] = deque()  # round-robin, one item a turn
        self._streams: set[EngineStream] = set()
        self._voices: dict[str, bool] = {}
        self._closed = False
        self.items_done = 0
        """Work items synthesized to the end."""
        self.items_aborted = 0
        """Work items cut short because their request went away (the callback returned 1)."""
        self.items_cut = 0
        """First items cut after a taste of audio because other requests waited for theirs."""
        self._threads = [threading.Thread(target=self._work, args=(lib,), daemon=True,
                                          name=f"veena-espeak-{i}")
                         for i, lib in enumerate(self._libs)]
        for t in self._threads:
            t.start()

    # --- observation -------------------------------------------------------------------------

    @property
    def engines(self) -> int:
        return len(self._libs)

    @property
    def active_jobs(self) -> int:
        """Requests still holding the engine: queued, parked or in synthesis. A cancelled
        request leaves only once its synthesis has actually stopped."""
        with self._cond:
            return len(self._streams)

    @property
    def queued_items(self) -> int:
        with self._cond:
            return sum(len(s.items) for s in self._streams)

    @property
    def alive_threads(self) -> int:
        return sum(t.is_alive() for t in self._threads)

    # --- the consumer side (event loop) -------------------------------------------------------

    def open(self, items: list[WorkItem], rate: int, pitch: int,
             loop: asyncio.AbstractEventLoop, marks: bool = False) -> EngineStream:
        """Queues a request's items; audio arrives on ``stream.channel`` (with each item's
        ``Marks`` after its audio when ``marks``)."""
        stream = EngineStream(items, rate, pitch, loop, marks)
        with self._cond:
            if self._closed:
                raise RuntimeError("the eSpeak NG engine is closed")
            self._streams.add(stream)
            self._fresh.append(stream)
            self._cond.notify()
        return stream

    def consumed(self, stream: EngineStream, samples: int) -> None:
        """The consumer took ``samples``; resumes a parked request once it has caught up."""
        stream.consumed += samples
        if stream.parked and stream.produced - stream.consumed <= self.max_ahead // 2:
            with self._cond:
                if stream.parked and not stream.cancelled:
                    stream.parked = False
                    self._running.append(stream)
                    self._cond.notify()

    def cancel(self, stream: EngineStream) -> None:
        """Drops the request's queued items; synthesis in progress aborts at its next callback.
        A request that got its END already costs nothing: the lock, which the workers hold
        now and then, is not taken (waiting for it gave the GIL away: 5% of the event loop's
        samples in a burst of short requests)."""
        if stream.ended:
            return
        with self._cond:
            stream.cancelled = True
            stream.items.clear()
            stream.parked = False
            for queue in (self._fresh, self._running):
                try:
                    queue.remove(stream)
                except ValueError:
                    pass
            if not stream.in_flight:
                self._streams.discard(stream)

    # --- voices ------------------------------------------------------------------------------

    def known_voice(self, name: str) -> bool | None:
        """Cached result of ``check_voice``; None when not checked yet."""
        return self._voices.get(name)

    def check_voice(self, name: str) -> bool:
        """Whether eSpeak NG has voice ``name`` (and its variant). Blocks until the first
        engine is free for a moment: call it from a worker thread, not an event loop."""
        cached = self._voices.get(name)
        if cached is not None:
            return cached
        ok = has_variant(name)
        if ok:
            lib = self._libs[0]
            with lib.lock:
                ok = lib.set_voice(name)
        self._voices[name] = ok
        return ok

    # --- workers -----------------------------------------------------------------------------

    def _work(self, lib: EspeakLibrary) -> None:
        while True:
            try:
                if not self._turn(lib):
                    return
            except Exception:  # a bug here must not leave requests waiting on a dead worker
                log.exception("eSpeak NG worker error; carrying on")

    def _turn(self, lib: EspeakLibrary) -> bool:
        """Synthesizes one work item of the next request in line; False once closed."""
        with self._cond:
            while not self._closed and not (self._fresh or self._running):
                self._cond.wait()
            if self._closed:
                return False
            taste = 0
            if self._fresh:
                stream = self._fresh.popleft()
                if self._fresh:  # others wait for their first audio too: give a taste only
                    taste = self.first_audio
            else:
                stream = self._running.popleft()
            if not stream.items:  # cannot happen; never leave its consumer waiting if it does
                self._streams.discard(stream)
                stream.ended = True
                stream.send(END)
                return True
            item = stream.items.popleft()
            stream.in_flight = True
        error: BaseException | None = None
        outcome, rest = DONE, None
        try:
            with lib.lock:
                outcome, rest = self._synthesize(lib, stream, item, taste)
        except Exception as exc:  # reported to the request, the worker carries on
            error = exc
        self._after(stream, outcome, rest, error)
        return True

    def _after(self, stream: EngineStream, outcome: str, rest: WorkItem | None,
               error: BaseException | None) -> None:
        """Puts a request back in line after its turn, or ends it."""
        with self._cond:
            stream.in_flight = False
            if outcome is ABORTED:
                self.items_aborted += 1
            elif outcome is CUT:
                self.items_cut += 1
            else:
                self.items_done += 1
            if stream.cancelled or self._closed:
                self._streams.discard(stream)
                return
            if rest is not None:
                stream.items.appendleft(rest)
            if error is not None or not stream.items:
                stream.items.clear()
                self._streams.discard(stream)
                stream.ended = True
                stream.send(error if error is not None else END)
            elif stream.produced - stream.consumed > self.max_ahead:
                stream.parked = True
            else:
                queue = self._running if stream.started else self._fresh
                queue.append(stream)
                self._cond.notify()

    def _synthesize(self, lib: EspeakLibrary, stream: EngineStream, item: WorkItem,
                    taste: int = 0) -> tuple[str, WorkItem | None]:
        """Synthesizes one item into the stream: (DONE, None), (ABORTED, None) when the request
        went away, or (CUT, rest of the item) when ``taste`` > 0 and the audio was cut at the
        first word that starts after ``taste`` samples."""
        if not lib.set_voice(item.voice):
            raise RuntimeError(f"eSpeak NG has no voice {item.voice!r}")
        lib.set_parameters(stream.rate, stream.pitch)
        chunk, text = item.chunk, item.text
        out = BlockSender(stream, chunk, self.block)
        outcome = DONE
        sent = 0  # samples handed on
        held: list[np.ndarray] = []  # in taste mode, audio past `taste` until a word starts
        held_n = 0
        cut: tuple[int, int] | None = None  # (character index, sample) where the rest starts
        found: list[tuple[int, int, int]] = []  # word starts, for ``Marks``
        produced = stream.produced

        def sink(samples: np.ndarray | None, words: list[tuple[int, int, int]] | None) -> bool:
            nonlocal outcome, sent, held_n, cut
            if stream.cancelled or self._closed:
                outcome = ABORTED
                return True
            if words and stream.marks:
                found.extend(words)
            n = 0 if samples is None else len(samples)
            if not taste:
                if n and not out.send(samples):
                    outcome = ABORTED
                    return True
                return False
            if n:
                if sent < taste:
                    now = samples[:taste - sent]
                    if not out.send(now):
                        outcome = ABORTED
                        return True
                    sent += len(now)
                    samples = samples[len(now):]
                if len(samples):
                    held.append(samples)
                    held_n += len(samples)
            for position, _, sample in words or ():
                index = position - 1
                if (cut is None and sample >= max(sent, taste) and 0 < index < len(text)
                        and text[index - 1].isspace() and text[index:].strip()):
                    cut = (index, sample)
            if cut is not None and sent + held_n >= cut[1]:
                outcome = CUT
                return True
            return False

        status = lib.synth(text, sink, words=bool(taste) or stream.marks)
        if status != 0 and outcome is DONE:
            raise RuntimeError(f"espeak_Synth failed with status {status}")
        if outcome is ABORTED:
            return outcome, None
        if held_n:
            audio = np.concatenate(held)
            if outcome is CUT:
                audio = audio[:cut[1] - sent].copy()
                fade = min(len(audio), self.sample_rate // 200)  # 5 ms, so the cut does not click
                if fade:
                    audio[-fade:] = (audio[-fade:] * np.linspace(1.0, 0.0, fade)).astype(np.int16)
            if len(audio) and not out.send(audio):
                return ABORTED, None
        if not out.flush():
            return ABORTED, None
        if stream.marks:
            end = cut[1] if outcome is CUT else None
            words = [(item.offset + position - 1, length, sample)
                     for position, length, sample in found if end is None or sample < end]
            if not stream.send(Marks(chunk, words, stream.produced - produced)):
                return ABORTED, None
        if outcome is CUT:
            return CUT, WorkItem(chunk, text[cut[0]:], item.voice, item.offset + cut[0])
        return DONE, None

    # --- shutdown ----------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Stops the workers (aborting synthesis in progress), fails open requests and returns
        the library copies to the pool. Blocks up to ``timeout``: not for an event loop."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            streams = list(self._streams)
            for stream in streams:
                stream.items.clear()
            self._fresh.clear()
            self._running.clear()
            self._cond.notify_all()
        for stream in streams:
            if not stream.cancelled:
                stream.send(RuntimeError("the eSpeak NG engine was shut down"))
        for t in self._threads:
            t.join(timeout)
        if any(t.is_alive() for t in self._threads):
            log.warning("eSpeak NG workers did not stop within %.1f s; not reusing them", timeout)
            return
        with self._cond:
            self._streams.clear()
        release_libraries(self._libs)
