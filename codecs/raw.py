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
    the same bytes in the same calls (a raw stream has no header to patch).

    ``pcm_s16le`` at the input's own rate is the samples' bytes as they are: no codec, no
    resampler, and no call that lets go of the GIL (the event loop encodes these inline)."""

    def __init__(self, encoder: str, sample_rate: int) -> None:
        self._encoder = encoder
        self._rate = sample_rate
        self._frames = FrameSource()
        self._context: av.AudioCodecContext | None = None
        self._as_is: bool | None = None  # decided by the first block

    def _encode(self, frame: av.AudioFrame | None) -> bytes:
        if self._context is None:
            self._context = av.CodecContext.create(self._encoder, "w")
            self._context.sample_rate = self._rate
            self._context.layout = "mono"
            self._context.format = "s16"
        return b"".join(bytes(packet) for packet in self._context.encode(frame))

    def encode(self, block: PCM) -> bytes:
        if self._as_is is None:
            self._as_is = self._encoder == "pcm_s16le" and block.sample_rate == self._rate
        if self._as_is:
            self._frames.check(block)
            return block.samples.astype("<i2", copy=False).tobytes()
        frame = self._frames.frame(block)
        return self._encode(frame) if frame is not None else b""

    def finish(self) -> bytes:
        return b"" if self._as_is else self._encode(None)

    def close(self) -> None:
        """Frees the codec context (and its resampler) now; idempotent."""
        self._context = None
