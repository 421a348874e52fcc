"""ElevenLabs' character ``alignment`` for ``/with-timestamps``, **estimated** from chunk-level
timing: a process-audio wrapper notes when each text chunk's audio starts (in seconds of output
audio), and each chunk's span is spread evenly over its characters. The original text's
characters are placed on the normalized text's timeline in proportion to their position."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from veena.platform.audio import PCM
from veena.platform.job import Job

STARTS = "elevenlabs.chunk_starts"
"""``job.state`` key: {chunk index: start second}; present only on timestamp requests."""
TOTAL = "elevenlabs.total_seconds"
"""``job.state`` key: the audio's length once synthesis has ended."""


async def mark_chunks(stream: AsyncIterator[PCM], job: Job) -> AsyncIterator[PCM]:
    """Passes the audio on, noting the second at which each chunk's first block starts."""
    starts: dict[int, float] = job.state[STARTS]
    elapsed = 0.0
    try:
        async for block in stream:
            starts.setdefault(max(job.chunk_started, 0), elapsed)
            elapsed += block.seconds
            yield block
    finally:
        job.state[TOTAL] = elapsed


def chunk_spans(job: Job) -> list[tuple[float, float]]:
    """(start, end) seconds of the chunks known to be complete: all once synthesis has ended,
    else those before the latest chunk that started. A chunk without audio gets no time."""
    starts: dict[int, float] = job.state.get(STARTS, {})
    total = job.state.get(TOTAL)
    if total is not None and len(starts) <= 1 < len(job.chunks):
        return _by_length(job.chunks, total)  # the synthesizer reports no chunk starts
    count = len(job.chunks) if total is not None else max(starts, default=0)
    spans, previous = [], 0.0
    for i in range(count):
        start = starts.get(i, previous)
        end = next((starts[j] for j in range(i + 1, len(job.chunks)) if j in starts),
                   total if total is not None else start)
        spans.append((start, max(start, end)))
        previous = spans[-1][1]
    return spans


def _by_length(chunks: list[str], total: float) -> list[tuple[float, float]]:
    """Spans in proportion to the chunks' lengths, for synthesizers that never call
    ``job.mark_chunk_started``."""
    edges = np.cumsum([0, *(len(c) for c in chunks)]) * total / max(sum(map(len, chunks)), 1)
    return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:])]


class Aligner:
    """Builds alignment pieces for a job's chunks as their spans become known."""

    def __init__(self, job: Job) -> None:
        self.job = job
        # where each chunk starts in the normalized string (chunks joined by " ")
        self.offsets = [0]
        for i, chunk in enumerate(job.chunks):
            self.offsets.append(self.offsets[-1] + len(chunk) + (1 if i else 0))
        self.chars: list[str] = []
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.done_chunks = 0
        self.done_original = 0

    def take(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(alignment, normalized_alignment) for chunks completed since the last call, None
        when there are none (or no characters)."""
        spans = chunk_spans(self.job)
        first = len(self.chars)
        for i in range(self.done_chunks, len(spans)):
            start, end = spans[i]
            text = self.job.chunks[i]
            if i:
                self._add(" ", start, start)
            step = (end - start) / max(len(text), 1)
            for j, ch in enumerate(text):
                self._add(ch, start + j * step, start + (j + 1) * step)
        finished = len(spans) == len(self.job.chunks)
        self.done_chunks = len(spans)
        if len(self.chars) == first and not finished:
            return None
        normalized = _shape(self.chars[first:], self.starts[first:], self.ends[first:])
        return self._original(finished), normalized

    def _add(self, ch: str, start: float, end: float) -> None:
        self.chars.append(ch)
        self.starts.append(start)
        self.ends.append(end)

    def _original(self, finished: bool) -> dict[str, Any]:
        text, m = self.job.text, max(len(self.chars), 1)
        scale = (self.offsets[-1] or 1) / max(len(text), 1)  # normalized chars per original one
        upto = len(text) if finished else min(len(text), math.floor(len(self.chars) / scale))
        ks = np.arange(self.done_original, upto, dtype=float)
        starts = ends = np.zeros(len(ks))
        if len(ks) and self.chars:
            positions = np.arange(len(self.chars), dtype=float)
            starts = np.interp(np.minimum(ks * scale, m - 1), positions, self.starts)
            ends = np.maximum(starts, np.interp(np.minimum((ks + 1) * scale - 1, m - 1),
                                                positions, self.ends))
        piece = _shape(list(text[self.done_original:upto]), list(starts), list(ends))
        self.done_original = upto
        return piece


def _shape(chars: list[str], starts: list[float], ends: list[float]) -> dict[str, Any]:
    return {"characters": chars,
            "character_start_times_seconds": [round(float(s), 3) for s in starts],
            "character_end_times_seconds": [round(float(e), 3) for e in ends]}
