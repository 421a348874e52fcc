"""RIFF/WAVE with 16-bit PCM: a 44-byte header written here, then the ``pcm`` stream.

Streaming: the header goes out first with ``0xFFFFFFFF`` RIFF and data sizes (the convention for
a WAV of unknown length, read to end of stream by browsers, FFmpeg and libsndfile), then samples
as they come. Not streaming: ``encode`` returns nothing and ``finish`` returns the whole file
with exact sizes, since the header precedes data whose length is known only at the end."""

from __future__ import annotations

import struct

from veena.codecs.raw import RawEncoder
from veena.platform.audio import PCM

HEADER_BYTES = 44
UNKNOWN_SIZE = 0xFFFFFFFF


def wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """The canonical 44-byte mono s16le header; ``data_bytes=None`` writes unknown sizes."""
    data_size = UNKNOWN_SIZE if data_bytes is None else data_bytes
    riff_size = UNKNOWN_SIZE if data_bytes is None else 36 + data_bytes
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", riff_size, b"WAVE", b"fmt ", 16, 1, 1,
                       sample_rate, sample_rate * 2, 2, 16, b"data", data_size)


class WavEncoder:
    """See the module docstring for the streaming and whole-file behaviour."""

    def __init__(self, sample_rate: int, *, streaming: bool) -> None:
        self._rate = sample_rate
        self._streaming = streaming
        self._pcm = RawEncoder("pcm_s16le", sample_rate)
        self._header_sent = False
        self._body: list[bytes] = []

    def _emit(self, data: bytes) -> bytes:
        if not self._streaming:
            self._body.append(data)
            return b""
        if self._header_sent:
            return data
        self._header_sent = True
        return wav_header(self._rate, None) + data

    def encode(self, block: PCM) -> bytes:
        data = self._pcm.encode(block)
        return self._emit(data) if data else b""

    def finish(self) -> bytes:
        tail = self._emit(self._pcm.finish())
        if self._streaming:
            return tail
        data = b"".join(self._body)
        return wav_header(self._rate, len(data)) + data

    def close(self) -> None:
        """Frees the codec context and what a whole file held back; idempotent."""
        self._pcm.close()
        self._body = []
