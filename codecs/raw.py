"""Headerless sample streams (``pcm`` s16le, G.711 ``mulaw`` and ``alaw``) through a PyAV codec
context without a container: every sample leaves in the same call that brought it."""

from __future__ import annotations

import av

from veena.codecs.resample import Resampler
from veena.platform.audio import PCM

RAW_ENCODERS = {"pcm": "pcm_s16le", "mulaw": "pcm_mulaw", "alaw": "pcm_alaw"}
"""Format name -> FFmpeg encoder. These encoders take frames of any size, so nothing waits."""


class RawEncoder:
    """Resamples to ``sample_rate`` and encodes with one of ``RAW_ENCODERS``; streaming or not,
    the output is the same bytes (a raw stream has no header to patch)."""

    def __init__(self, encoder: str, sample_rate: int) -> None:
        self._resampler = Resampler(sample_rate)
        self._context = av.CodecContext.create(encoder, "w")
        self._context.sample_rate = sample_rate
        self._context.layout = "mono"
        self._context.format = "s16"

    def _encode(self, frames: list[av.AudioFrame]) -> bytes:
        return b"".join(bytes(packet) for frame in frames for packet in self._context.encode(frame))

    def encode(self, block: PCM) -> bytes:
        return self._encode(self._resampler.frames(block))

    def finish(self) -> bytes:
        return self._encode([*self._resampler.flush(), None])
