"""Pitch-preserving time-stretch of a PCM stream with libavfilter's ``atempo`` through PyAV.

One filter graph per stream, fed block by block, so the stretch is continuous across the
synthesizer's chunk joins (no seam where a block ends); ``atempo`` takes 0.5-100 per instance,
slower factors chain two."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from fractions import Fraction

import av
import av.filter
import numpy as np

from veena.platform.audio import PCM


def tempo_chain(factor: float) -> list[float]:
    """``factor`` as ``atempo`` instances each within 0.5-100 (e.g. 0.25 -> [0.5, 0.5])."""
    if factor <= 0:
        raise ValueError("tempo factor must be positive")
    chain = []
    while factor < 0.5:
        chain.append(0.5)
        factor /= 0.5
    return [*chain, factor]


class TempoStretcher:
    """Speeds mono s16 audio up (``factor`` > 1) or slows it down, keeping its pitch."""

    def __init__(self, sample_rate: int, factor: float) -> None:
        self.sample_rate = sample_rate
        self._time_base = Fraction(1, sample_rate)
        self._pts = 0
        graph = av.filter.Graph()
        self._src = graph.add_abuffer(format="s16", sample_rate=sample_rate, layout="mono",
                                      time_base=self._time_base)
        node = self._src
        for f in tempo_chain(factor):
            step = graph.add("atempo", f"{f:.6f}")
            node.link_to(step)
            node = step
        fmt = graph.add("aformat", "sample_fmts=s16:channel_layouts=mono")
        node.link_to(fmt)
        self._sink = graph.add("abuffersink")
        fmt.link_to(self._sink)
        graph.configure()
        self._graph = graph

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Stretches one block; returns what the filter hands out so far (may be empty)."""
        if len(samples):
            frame = av.AudioFrame(format="s16", layout="mono", samples=len(samples))
            frame.planes[0].update(np.ascontiguousarray(samples, dtype=np.int16))
            frame.sample_rate, frame.time_base, frame.pts = self.sample_rate, self._time_base, self._pts
            self._pts += len(samples)
            self._src.push(frame)
        return self._pull()

    def finish(self) -> np.ndarray:
        """Flushes the filter: the last stretched samples."""
        self._src.push(None)
        return self._pull()

    def _pull(self) -> np.ndarray:
        out = []
        while True:
            try:
                frame = self._sink.pull()
            except (av.BlockingIOError, av.EOFError):
                break
            out.append(frame.to_ndarray().reshape(-1))
        return np.concatenate(out).astype(np.int16, copy=False) if out else np.zeros(0, np.int16)


async def stretch(stream: AsyncIterator[PCM], factor: float) -> AsyncIterator[PCM]:
    """``stream`` played ``factor`` times as fast, pitch kept, block by block as it comes."""
    stretcher: TempoStretcher | None = None
    async with aclosing(stream):
        async for block in stream:
            if stretcher is None:
                stretcher = TempoStretcher(block.sample_rate, factor)
            out = stretcher.push(block.samples)
            if len(out):
                yield PCM(out, block.sample_rate)
    if stretcher is not None:
        tail = stretcher.finish()
        if len(tail):
            yield PCM(tail, stretcher.sample_rate)
