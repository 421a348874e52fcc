"""PCM blocks as PyAV frames for a codec context, which resamples them to its own rate.

``AudioCodecContext.encode`` runs every frame through an ``av.AudioResampler`` that PyAV
creates for that context on the first frame (one per encoder, never shared) and flushes on
``encode(None)``; it converts rate, sample format and frame size in one filter graph. A second
resampler in front of it would cost a second graph per block for nothing."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from veena.platform.audio import PCM


class FrameSource:
    """Numbers one stream's blocks as consecutive ``s16`` mono frames; every block of a stream
    must have the same sample rate (ValueError otherwise)."""

    def __init__(self) -> None:
        self._rate: int | None = None
        self._time_base: Fraction | None = None
        self._pts = 0

    def check(self, block: PCM) -> None:
        """Takes the first block's rate as the stream's; ValueError for a block at another."""
        if self._rate is None:
            self._rate, self._time_base = block.sample_rate, Fraction(1, block.sample_rate)
        elif block.sample_rate != self._rate:
            raise ValueError(f"input sample rate changed mid-stream from {self._rate} "
                             f"to {block.sample_rate} Hz")

    def frame(self, block: PCM) -> av.AudioFrame | None:
        """The block as a frame, or None for an empty block."""
        self.check(block)
        if not len(block.samples):
            return None
        frame = av.AudioFrame(format="s16", layout="mono", samples=len(block.samples))
        # Half the cost of AudioFrame.from_ndarray; update() needs one contiguous buffer.
        frame.planes[0].update(np.ascontiguousarray(block.samples))
        frame.sample_rate = block.sample_rate
        frame.time_base = self._time_base
        frame.pts = self._pts
        self._pts += len(block.samples)
        return frame
