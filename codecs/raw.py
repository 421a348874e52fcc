"""Headerless sample streams (``pcm`` s16le, G.711 ``mulaw`` and ``alaw``) through a PyAV codec
context without a container: every sample leaves in the call that brought it (resampling aside,
whose filter holds back a few samples until ``finish``)."""

from __future__ import annotations

import av

from veena.codecs.resample import FrameSource
from veena.platform.audio import PCM

RAW_ENCODERS = {"pcm": "pcm_s16le", "mulaw": "pcm_mulaw", "alaw": "pcm_alaw"}
"""Format name -> FFmpeg encoder. These take frames of any size, so nothing waits for a frame."""


class RawEncoder:
    """Encodes with one of ``RAW_ENCODERS`` at ``sample_rate``; streaming or not, the output is
    the same bytes in the same calls (a raw stream has no header to patch)."""

    def __init__(self, encoder: str, sample_rate: int) -> None:
        self._frames = FrameSource()
        self._context = av.CodecContext.create(encoder, "w")
        self._context.sample_rate = sample_rate
        self._context.layout = "mono"
        self._context.format = "s16"

    def _encode(self, frame: av.AudioFrame | None) -> bytes:
        return b"".join(bytes(packet) for packet in self._context.encode(frame))

    def encode(self, block: PCM) -> bytes:
        frame = self._frames.frame(block)
        return self._encode(frame) if frame is not None else b""

    def finish(self) -> bytes:
        return self._encode(None)
