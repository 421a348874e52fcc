"""The one PCM representation that flows through every stage: mono int16 blocks with their rate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class PCM:
    """A block of mono signed 16-bit samples at ``sample_rate`` Hz."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        if self.samples.dtype != np.int16 or self.samples.ndim != 1:
            raise TypeError("PCM samples must be a 1-D int16 array")
        if self.sample_rate <= 0:
            raise ValueError("sample_rate must be positive")

    @property
    def seconds(self) -> float:
        """Duration of the block in seconds."""
        return len(self.samples) / self.sample_rate

    @classmethod
    def from_float(cls, audio: np.ndarray, sample_rate: int) -> PCM:
        """Builds a block from float samples in [-1, 1], clipping out-of-range values."""
        clipped = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
        return cls((clipped * 32767.0).round().astype(np.int16), sample_rate)

