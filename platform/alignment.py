"""Word timestamps: when each word of a request is spoken, with character offsets into the text
the client sent (before any rewrite).

How it flows (docs/hooks.md, ``veena_align``):

1. A consumer that wants times (the WebSocket, ``timestamps: true`` over HTTP) attaches an
   ``Alignment`` to the job before its audio starts (``Alignment.attach``).
2. The pipeline then passes the synthesizer's audio through ``tap``, which notes where each
   chunk's audio starts and ends (from ``job.mark_chunk_started``) and keeps the chunk's audio.
3. When a chunk's audio is complete, ``tap`` asks ``veena_align`` for its words. The built-in
   implementation (``builtin``) uses the word starts the synthesizer measured
   (``WordMarks``: eSpeak NG's word events, exact) or else estimates; an aligner plugin can
   answer first.
4. ``Alignment`` maps the chunk's character spans back to the client's text (``textmap``) and
   its times to the audio the client gets (a time-stretch for ``speed`` divides them), and
   hands each chunk's piece to the consumer (``take``).
"""

from __future__ import annotations

import asyncio
import bisect
import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

import numpy as np

from veena.platform.audio import PCM
from veena.platform.textmap import Rewrites, SourceMap, original_map

if TYPE_CHECKING:
    from veena.platform.job import Job
    from veena.platform.runtime import Runtime

SILENCE = 200
"""Samples quieter than this (of 32767) count as silence when word ends are trimmed."""
_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class WordTime:
    """One word of a chunk: characters ``[text_start, text_end)`` of ``job.chunks[chunk]``,
    spoken from ``start`` to ``end`` seconds after the chunk's audio begins."""

    text_start: int
    text_end: int
    start: float
    end: float
    estimated: bool


class WordMarks:
    """Word starts a synthesizer measured while it spoke (a ``job.state`` value): for each
    chunk, ``(text_start, text_end, second)`` with characters of ``job.chunks[chunk]`` and
    seconds from the chunk's first sample."""

    def __init__(self) -> None:
        self.by_chunk: dict[int, list[tuple[int, int, float]]] = {}

    def add(self, chunk: int, text_start: int, text_end: int, second: float) -> None:
        self.by_chunk.setdefault(chunk, []).append((text_start, text_end, second))


def wants_words(job: Job) -> bool:
    """Whether anyone asked for this job's word times (a synthesizer measures them only then)."""
    return Alignment in job.state


def word_marks(job: Job) -> WordMarks:
    """The job's ``WordMarks``, created on first use."""
    marks = job.state.get(WordMarks)
    if marks is None:
        marks = job.state[WordMarks] = WordMarks()
    return marks


def _tempo(job: Job) -> float:
    tempo = getattr(job, "tempo", None) or job.state.get("tempo")
    return tempo or 1.0


def _chunk_started(job: Job) -> int:
    started = getattr(job, "chunk_started", None)
    return started if started is not None else job.state.get("chunk_started", -1)


class Alignment:
    """A job's word times, chunk by chunk, in the client's terms: ``take`` returns the pieces
    completed since it was last called, each ``{"text_start", "text_end", "audio_start",
    "audio_end", "words": [{"text_start", "text_end", "start", "end", "estimated"}]}`` with
    offsets into ``job.text`` and seconds of the job's audio."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self._map: SourceMap | None = None
        self._offsets: list[int] = []
        self._ready: list[dict[str, Any]] = []
        self.pieces: list[dict[str, Any]] = []
        """Every piece so far."""

    @classmethod
    def attach(cls, job: Job) -> Alignment:
        """Asks for the job's word times; call before its audio starts."""
        alignment = job.state[cls] = cls(job)
        return alignment

    def take(self) -> list[dict[str, Any]]:
        ready, self._ready = self._ready, []
        return ready

    def words(self) -> list[dict[str, Any]]:
        """Every word so far, in order."""
        return [w for p in self.pieces for w in p["words"]]

    def build_map(self) -> SourceMap:
        """Works out how the chunks map to ``job.text`` (a pure function of the texts: may run
        on a worker thread, as ``tap`` does; tens of milliseconds for thousands of rewritten
        characters)."""
        if self._map is None:
            joined, at = "", []
            for text in self.job.chunks:
                joined += "\n" if joined else ""
                at.append(len(joined))
                joined += text
            self._offsets = at
            self._map = original_map(self.job.text, joined, self.job.state.get(Rewrites, ()))
        return self._map

    def _source(self, chunk: int, start: int, end: int) -> tuple[int, int]:
        source = self.build_map()
        base = self._offsets[chunk]
        return source.source(base + start, base + end)

    def add(self, chunk: int, start: float, end: float, words: list[WordTime]) -> None:
        """Chunk ``chunk`` spans ``start``-``end`` seconds of the synthesizer's audio; its
        ``words`` (times from the chunk's start) become one piece for the client."""
        tempo = _tempo(self.job)
        a, b = float(start) / tempo, float(end) / tempo
        out: list[dict[str, Any]] = []
        for w in sorted(words, key=lambda w: (w.start, w.text_start)):
            s, e = self._source(chunk, w.text_start, w.text_end)
            t0 = float(min(max(a + w.start / tempo, a), b))
            t1 = float(min(max(a + w.end / tempo, t0), b))
            last = out[-1] if out else None
            if last is not None and (s < last["text_end"] or s == e):
                # several spoken words of one item ("two lakh fifty thousand" of "₹2,50,000")
                last["text_end"] = max(last["text_end"], e)
                last["end"] = max(last["end"], round(t1, 4))
                last["estimated"] = last["estimated"] or w.estimated
                continue
            out.append({"text_start": s, "text_end": e, "start": round(t0, 4),
                        "end": round(t1, 4), "estimated": w.estimated})
        text = self.job.chunks[chunk]
        cs, ce = self._source(chunk, len(text) - len(text.lstrip()), len(text.rstrip()))
        piece = {"text_start": cs, "text_end": ce, "audio_start": round(a, 4),
                 "audio_end": round(b, 4), "words": out}
        self.pieces.append(piece)
        self._ready.append(piece)


async def tap(stream: AsyncIterator[PCM], job: Job, runtime: Runtime) -> AsyncIterator[PCM]:
    """Passes the synthesizer's audio on unchanged; as each chunk's audio completes, asks
    ``veena_align`` for its words and adds them to the job's ``Alignment``."""
    alignment: Alignment = job.state[Alignment]
    current, begin, samples, rate = -1, 0, 0, 0
    parts: list[np.ndarray] = []
    marked = False
    mapped = asyncio.get_running_loop().run_in_executor(None, alignment.build_map)

    async def finish(chunk: int, end: int) -> None:
        audio = PCM(np.concatenate(parts) if parts else np.zeros(0, np.int16), rate or 1)
        words = runtime.pm.hook.veena_align(job=job, chunk=chunk, audio=audio, runtime=runtime)
        if isawaitable(words):
            words = await words
        await mapped
        alignment.add(chunk, begin / (rate or 1), end / (rate or 1), list(words or ()))

    async with aclosing(stream):
        async for block in stream:
            started = _chunk_started(job)
            marked = marked or started >= 0
            index = max(started, 0)
            if index != current:
                if current >= 0:
                    await finish(current, samples)
                for skipped in range(current + 1, index):  # chunks that made no audio
                    parts, begin = [], samples
                    await finish(skipped, samples)
                current, begin, parts = index, samples, []
            rate = block.sample_rate
            parts.append(block.samples)
            samples += len(block.samples)
            yield block
    if not job.chunks:
        return
    if marked or len(job.chunks) == 1:
        if current >= 0:
            await finish(current, samples)
        for rest in range(current + 1, len(job.chunks)):
            parts, begin = [], samples
            await finish(rest, samples)
        return
    # A synthesizer that never says where chunks start: spans in proportion to their length.
    audio = np.concatenate(parts) if parts else np.zeros(0, np.int16)
    edges = np.cumsum([0, *(len(c) for c in job.chunks)]) * len(audio) / max(
        sum(map(len, job.chunks)), 1)
    for i in range(len(job.chunks)):
        lo, hi = int(edges[i]), int(edges[i + 1])
        parts, begin = [audio[lo:hi]], lo
        await finish(i, hi)


# --- the built-in implementation of veena_align ------------------------------------------------

def builtin(job: Job, chunk: int, audio: PCM) -> list[WordTime]:
    """The words of ``job.chunks[chunk]``: from the synthesizer's ``WordMarks`` when it measured
    them (exact starts; a word ends where its sound stops before the next word starts), else
    estimated (the chunk's sounding audio, without leading and trailing silence, shared out
    over its words by their length in characters)."""
    text = job.chunks[chunk]
    tokens = [m.span() for m in _WORD.finditer(text)]
    if not tokens:
        return []
    marks = job.state.get(WordMarks)
    found = marks.by_chunk.get(chunk) if marks is not None else None
    if found:
        return _exact(tokens, found, audio)
    return _estimate(tokens, audio)


def _loud(samples: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.abs(samples.astype(np.int32)) > SILENCE)


def _estimate(tokens: list[tuple[int, int]], audio: PCM) -> list[WordTime]:
    loud = _loud(audio.samples)
    rate = audio.sample_rate
    lo, hi = (loud[0], loud[-1] + 1) if len(loud) else (0, len(audio.samples))
    total = sum(e - s for s, e in tokens)
    out, t = [], lo / rate
    span = (hi - lo) / rate
    for s, e in tokens:
        d = span * (e - s) / total
        out.append(WordTime(s, e, t, t + d, True))
        t += d
    return out


def _exact(tokens: list[tuple[int, int]], marks: list[tuple[int, int, float]],
           audio: PCM) -> list[WordTime]:
    """One word per whitespace-separated token that has a mark (a synthesizer may mark several
    in one token, "₹2,50,000" read as four words): starts measured, ends trimmed to sound."""
    starts = [s for s, _ in tokens]
    firsts: dict[int, float] = {}
    for text_start, _, second in marks:
        i = bisect.bisect_right(starts, text_start) - 1
        if i >= 0:
            firsts[i] = min(firsts.get(i, second), second)
    order = sorted(firsts)
    if not order:
        return []
    rate, samples = audio.sample_rate, audio.samples
    duration = len(samples) / rate
    out = []
    for k, i in enumerate(order):
        begin = firsts[i]
        nxt = firsts[order[k + 1]] if k + 1 < len(order) else duration
        nxt = max(nxt, begin)
        a, b = int(begin * rate), int(nxt * rate)
        loud = _loud(samples[a:b])
        end = (a + loud[-1] + 1) / rate if len(loud) else nxt
        # Tokens without a mark of their own were read together with the one before
        # (eSpeak NG says "that the" as one word): they share its span.
        last = order[k + 1] - 1 if k + 1 < len(order) else len(tokens) - 1
        first = 0 if k == 0 else i
        out.append(WordTime(tokens[first][0], tokens[last][1], begin, min(end, nxt), False))
    return out
