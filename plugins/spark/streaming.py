"""Streaming decode arithmetic: which tokens each decoder call sees, which samples it emits, and
how neighbouring pieces are blended. Pure Python/numpy; the decoder itself is called elsewhere.

A window decodes tokens ``[start, stop)`` and emits the samples of tokens ``[emit_from,
emit_to)``: ``left`` tokens of context before and ``lookahead`` tokens after the emitted block
make the emitted samples (almost) what a decode of the whole utterance would give, because
BiCodec's decode path is convolution with per-frame norms and its influence falls off within
its receptive field (±67 tokens exactly for the released config; see docs/benchmarks.md
for the measured seam error that sets the defaults). Every window is the same size, so each
emitted block costs the same however long the utterance is.

Where two windows meet, ``crossfade`` samples decoded by both are blended with a raised-cosine
ramp, so any remaining difference fades instead of stepping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """Sizes of the sliding window, in tokens (``crossfade`` in samples)."""

    left: int = 24
    """Tokens of context decoded before the emitted block (dropped from the output)."""
    lookahead: int = 24
    """Tokens that must exist after a block before it is emitted (decoded, then dropped)."""
    first_lookahead: int | None = None
    """Lookahead of the first block only (None: ``lookahead``). Fewer tokens let the first
    audio leave sooner, at the cost of a larger error where the first and second windows meet
    (measured in docs/benchmarks.md); later seams are unchanged."""
    first_block: int = 6
    """Tokens in the first block: small, for time to first audio."""
    block: int = 40
    """Tokens in every later block, once the ramp reaches it."""
    ramp: float = 1.5
    """A later block holds at most ``ramp`` x the tokens emitted before it, so the audio already
    sent covers the wait for the next block at up to 1/ramp of real time: 6, 9, 23, 40..."""
    crossfade: int = 160
    """Samples blended where consecutive windows overlap (at most ``lookahead * hop``)."""
    hop: int = 320
    """Samples per token."""

    def __post_init__(self) -> None:
        if min(self.left, self.lookahead) < 0 or min(self.first_block, self.block) < 1:
            raise ValueError("window sizes must be non-negative and blocks at least one token")
        if self.ramp <= 0:
            raise ValueError("ramp must be positive")
        if self.first_lookahead is not None and self.first_lookahead < 0:
            raise ValueError("first_lookahead must be non-negative")
        shortest = min(self.lookahead, self.lookahead_after(0))
        if not 0 <= self.crossfade <= shortest * self.hop:
            raise ValueError(f"crossfade ({self.crossfade} samples) must fit in the lookahead "
                             f"({shortest} tokens = {shortest * self.hop} samples)")

    @property
    def max_window(self) -> int:
        """The most tokens one decoder call ever sees."""
        return max(self.left + self.block + self.lookahead,
                   self.first_block + self.lookahead_after(0),
                   self.left + self.first_block + self.lookahead)

    def block_after(self, emitted: int) -> int:
        """Tokens in the block that follows ``emitted`` emitted tokens."""
        if emitted == 0:
            return self.first_block
        return max(1, min(self.block, math.ceil(self.ramp * emitted)))

    def lookahead_after(self, emitted: int) -> int:
        """Lookahead of the block that follows ``emitted`` emitted tokens."""
        if emitted == 0 and self.first_lookahead is not None:
            return self.first_lookahead
        return self.lookahead

    def window_lengths(self) -> list[int]:
        """Token counts of the windows a long utterance decodes (last windows aside)."""
        lengths, emitted = set(), 0
        while True:
            block = self.block_after(emitted)
            lengths.add(min(emitted, self.left) + block + self.lookahead_after(emitted))
            if block == self.block and emitted >= self.left:
                return sorted(lengths)  # every later window is this one's size
            emitted += block

    def first_audio_after(self) -> int:
        """Tokens that must be generated before the first block can leave (if the utterance
        is at least that long)."""
        return self.first_block + self.lookahead_after(0)


@dataclass(frozen=True, slots=True)
class Window:
    start: int
    emit_from: int
    emit_to: int
    stop: int
    tokens: tuple[int, ...]
    last: bool
    """The final window of the utterance (emits up to the end, keeps no crossfade tail)."""

    @property
    def emit_samples(self) -> int:
        return self.emit_to - self.emit_from


@dataclass(slots=True)
class StreamingDecoder:
    """Collects semantic tokens as they are generated and cuts them into decoder windows.

    ``push`` tokens, then repeatedly take ``next_window()``, decode its ``tokens`` and hand the
    waveform to ``accept``, which returns the samples to play. ``finish()`` marks the end of the
    utterance so the remaining tokens are emitted without lookahead. Memory stays bounded: tokens
    older than the left context are dropped.
    """

    plan: WindowPlan
    _tokens: list[int] = field(default_factory=list)
    _base: int = 0
    """Absolute index of ``_tokens[0]``."""
    _emitted: int = 0
    """Tokens whose samples have been returned (absolute index)."""
    _tail: np.ndarray | None = None
    """The previous window's samples just past its emitted block, to blend with the next."""
    _finished: bool = False
    _pending: Window | None = None

    @property
    def received(self) -> int:
        return self._base + len(self._tokens)

    @property
    def emitted(self) -> int:
        return self._emitted

    @property
    def done(self) -> bool:
        return self._finished and self._emitted >= self.received

    def push(self, *values: int) -> None:
        if self._finished:
            raise RuntimeError("push after finish")
        self._tokens.extend(values)

    def finish(self) -> None:
        self._finished = True

    def next_window(self) -> Window | None:
        """The next window to decode, or None until enough tokens exist (or when done)."""
        if self._pending is not None:
            raise RuntimeError("accept() the previous window first")
        p, e, n = self.plan, self._emitted, self.received
        if e >= n:
            return None
        block, lookahead = p.block_after(e), p.lookahead_after(e)
        if not self._finished and n < e + block + lookahead:
            return None
        emit_to = min(n, e + block)
        stop = min(n, emit_to + lookahead)
        start = max(0, e - p.left)
        last = self._finished and emit_to == n
        window = Window(start, e, emit_to, stop,
                        tuple(self._tokens[start - self._base: stop - self._base]), last)
        self._pending = window
        return window

    def accept(self, window: Window, audio: np.ndarray) -> np.ndarray:
        """Takes the decoded waveform of ``window`` (``(stop - start) * hop`` samples) and
        returns the samples of its emitted block, blended with the previous window's tail."""
        if window is not self._pending:
            raise RuntimeError("accept() a window returned by next_window()")
        hop, xf = self.plan.hop, self.plan.crossfade
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        expected = (window.stop - window.start) * hop
        if len(audio) != expected:
            raise ValueError(f"decoder returned {len(audio)} samples for {expected}")
        a = (window.emit_from - window.start) * hop
        b = (window.emit_to - window.start) * hop
        out = audio[a:b].copy()
        if self._tail is not None:
            k = min(len(self._tail), len(out))
            out[:k] = crossfade(self._tail[:k], out[:k])
        self._tail = None if window.last else audio[b:b + xf].copy() if xf else None
        self._emitted = window.emit_to
        self._pending = None
        drop = max(0, self._emitted - self.plan.left) - self._base
        if drop > 0:
            del self._tokens[:drop]
            self._base += drop
        return out


def fade_in(n: int) -> np.ndarray:
    """Raised-cosine ramp 0 → 1 over ``n`` samples (excluding both ends)."""
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n, dtype=np.float32) + 0.5) / n)).astype(np.float32)


def crossfade(outgoing: np.ndarray, incoming: np.ndarray) -> np.ndarray:
    """Blends two equally long pieces: ``outgoing`` fades out while ``incoming`` fades in."""
    if len(outgoing) != len(incoming):
        raise ValueError("crossfade needs equally long pieces")
    if not len(outgoing):
        return incoming.astype(np.float32)
    w = fade_in(len(incoming))
    return (outgoing * (1.0 - w) + incoming * w).astype(np.float32)


@dataclass(slots=True)
class ChunkJoiner:
    """Joins the audio of consecutive text chunks (separately generated) with a crossfade.

    The last ``samples`` of each chunk are held back and blended with the start of the next, so
    the total is shorter by ``samples`` per join; the very last tail is released by ``finish``.
    """

    samples: int = 320
    _held: np.ndarray | None = None

    def feed(self, audio: np.ndarray, chunk_ends: bool) -> np.ndarray:
        """Audio of the current chunk; ``chunk_ends`` on its last piece. Returns what may be
        played now."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if not len(audio):
            return audio
        if self._held is not None:
            held, self._held = self._held, None
            k = min(len(held), len(audio))  # a piece shorter than the tail shortens the fade
            audio = np.concatenate([held[: len(held) - k], crossfade(held[len(held) - k:], audio[:k]),
                                    audio[k:]])
        if chunk_ends and self.samples:
            keep = min(self.samples, len(audio))
            self._held, audio = audio[len(audio) - keep:].copy(), audio[: len(audio) - keep]
        return audio

    def finish(self) -> np.ndarray:
        held, self._held = self._held, None
        return np.zeros(0, np.float32) if held is None else held
