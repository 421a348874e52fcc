"""A deterministic test voice: one 440 Hz tone block per chunk, 16 kHz, with an optional delay."""

from __future__ import annotations

import asyncio

import numpy as np

from veena.platform.audio import PCM
from veena.platform.job import Job


class ToneSynthesizer:
    name = "tone"
    sample_rate = 16000

    def __init__(self, seconds_per_chunk: float = 0.25, delay: float = 0.0) -> None:
        self.seconds_per_chunk = seconds_per_chunk
        self.delay = delay
        self.active = 0
        self.blocks_made = 0

    async def stream(self, job: Job):
        self.active += 1
        try:
            n = int(self.sample_rate * self.seconds_per_chunk)
            t = np.arange(n) / self.sample_rate
            for i, _chunk in enumerate(job.chunks):
                job.mark_chunk_started(i)
                for part in np.array_split(0.3 * np.sin(2 * np.pi * 440 * t), 5):
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    self.blocks_made += 1
                    yield PCM.from_float(part, self.sample_rate)
        finally:
            self.active -= 1
