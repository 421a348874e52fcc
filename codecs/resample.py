"""PCM blocks to PyAV audio frames at the output rate, resampling with ``av.AudioResampler``."""

from __future__ import annotations

from fractions import Fraction

import av

from veena.platform.audio import PCM


class Resampler:
    """Turns one stream's PCM blocks into mono ``s16`` frames at ``rate`` Hz.

    The ``av.AudioResampler`` is created on the first block that needs it; blocks already at
    ``rate`` pass through without one. Every block of a stream must share one input rate."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._input_rate: int | None = None
        self._resampler: av.AudioResampler | None = None
        self._pts = 0

    def frames(self, block: PCM) -> list[av.AudioFrame]:
        """Frames at the output rate for ``block`` (possibly none while the resampler fills)."""
        if self._input_rate is None:
            self._input_rate = block.sample_rate
            if block.sample_rate != self.rate:
                self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.rate)
        elif block.sample_rate != self._input_rate:
            raise ValueError(f"input sample rate changed mid-stream from {self._input_rate} "
                             f"to {block.sample_rate} Hz")
        if not len(block.samples):
            return []
        frame = av.AudioFrame.from_ndarray(block.samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = block.sample_rate
        frame.time_base = Fraction(1, block.sample_rate)
        frame.pts = self._pts
        self._pts += len(block.samples)
        if self._resampler is None:
            return [frame]
        return self._resampler.resample(frame)

    def flush(self) -> list[av.AudioFrame]:
        """The resampler's held-back tail; call once at the end of the stream."""
        if self._resampler is None:
            return []
        return self._resampler.resample(None)
