"""In-memory destinations for PyAV muxers: a drainable non-seekable stream, or a seekable file."""

from __future__ import annotations

import io


class StreamSink:
    """A write-only, NOT seekable byte sink, drained after every push.

    Because ``seekable()`` is False, PyAV gives FFmpeg no seek callback, so muxers never try to
    go back and patch headers (which on a stream would only append junk after the audio)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.closed = False
        """True after ``close``: PyAV then skips the trailer of a muxer closed on this sink."""

    def write(self, data: bytes) -> int:
        self._buffer += data
        return len(data)

    def seekable(self) -> bool:
        return False

    def drain(self) -> bytes:
        """Everything written since the last drain."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def close(self) -> None:
        """Drops what is buffered; nothing more is wanted from this stream."""
        self.closed = True
        self._buffer = bytearray()


class FileSink(io.BytesIO):
    """A seekable in-memory file for whole-body output: muxers patch their headers at close
    (FLAC STREAMINFO length and MD5, the MP3 Xing/LAME tag with gapless delay and padding)."""
