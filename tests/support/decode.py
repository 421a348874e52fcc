"""Decodes any output format back to mono float samples with PyAV, for assertions."""

from __future__ import annotations

import io

import av
import numpy as np

RAW_DEMUXERS = {"pcm": "s16le", "mulaw": "mulaw", "alaw": "alaw"}


def decode(body: bytes, codec: str, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """(samples, rate) of a complete body; raw formats need their ``sample_rate``."""
    options = {}
    fmt = RAW_DEMUXERS.get(codec)
    if fmt:
        options = {"sample_rate": str(sample_rate), "ch_layout": "mono"}
    with av.open(io.BytesIO(body), format=fmt, options=options) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray() for f in container.decode(stream)]
        rate = stream.codec_context.sample_rate
    if not frames:
        return np.zeros(0, dtype=np.float32), rate
    data = np.concatenate([f.reshape(f.shape[0], -1) if f.ndim == 2 else f[None] for f in frames], axis=1)
    data = data[0] if data.shape[0] == 1 else data.mean(axis=0)
    if data.dtype == np.int16:
        data = data.astype(np.float32) / 32768.0
    return data.astype(np.float32), rate
