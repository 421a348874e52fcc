"""Compressed formats muxed in-process by PyAV: one generic encoder, one ``ContainerFormat`` each.

Streaming output goes to a non-seekable ``StreamSink`` drained after every block, so bytes
leave within about one codec frame of the audio; whole-body output goes to a seekable
``FileSink`` whose headers the muxer patches at close (exact lengths, gapless MP3 info)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import av

from veena.codecs.resample import FrameSource
from veena.codecs.sink import FileSink, StreamSink
from veena.platform.audio import PCM


@dataclass(frozen=True, slots=True)
class ContainerFormat:
    """What differs between container formats; everything else is ``ContainerEncoder``."""

    muxer: str
    encoder: str
    muxer_options: dict[str, str] = field(default_factory=dict)
    """Options for both modes."""
    streaming_muxer_options: dict[str, str] = field(default_factory=dict)
    """Options added when streaming (e.g. Ogg page duration)."""
    codec_options: Callable[[int, bool, int | None], dict[str, str]] = \
        lambda rate, streaming, bitrate: {}
    """(sample_rate, streaming, bitrate or None) -> encoder options."""
    bitrate_range: Callable[[int], tuple[int, int]] | None = None
    """sample_rate -> (lowest, highest) bits/s; None: the format takes no bitrate."""
    default_bitrate: Callable[[int], int] | None = None
    """sample_rate -> bits/s used when the request names none; None: the encoder's own
    choice, or a quality mode set by ``codec_options`` (AAC)."""

    def check_bitrate(self, name: str, sample_rate: int, bitrate: int | None) -> int | None:
        """The bitrate to use; ValueError naming the valid range for an impossible one."""
        if self.bitrate_range is None:
            return None
        if bitrate is None:
            return self.default_bitrate(sample_rate) if self.default_bitrate else None
        low, high = self.bitrate_range(sample_rate)
        if not low <= bitrate <= high:
            raise ValueError(f"{name} bitrate {bitrate} bits/s is outside {low}..{high} bits/s "
                             f"at {sample_rate} Hz")
        return bitrate


class ContainerEncoder:
    """PCM -> PyAV encoder (resampling inside) -> PyAV muxer -> in-memory sink, for one request."""

    def __init__(self, fmt: ContainerFormat, sample_rate: int, *, streaming: bool,
                 bitrate: int | None) -> None:
        self._streaming = streaming
        self._sink = StreamSink() if streaming else FileSink()
        options = {**fmt.muxer_options, **(fmt.streaming_muxer_options if streaming else {})}
        self._container: av.container.OutputContainer | None = av.open(
            self._sink, "w", format=fmt.muxer, options=options)
        self._stream: av.AudioStream | None = self._container.add_stream(
            fmt.encoder, rate=sample_rate, layout="mono",
            options=fmt.codec_options(sample_rate, streaming, bitrate))
        if bitrate is not None:
            self._stream.codec_context.bit_rate = bitrate
        self._frames = FrameSource()
        self._started = False

    def _push(self, frame: av.AudioFrame | None) -> None:
        packets = self._stream.encode(frame)
        if packets:
            self._container.mux(packets)
            self._started = True

    def encode(self, block: PCM) -> bytes:
        frame = self._frames.frame(block)
        if frame is not None:
            self._push(frame)
        return self._sink.drain() if self._streaming else b""

    def finish(self) -> bytes:
        self._push(None)
        if not self._started:
            self._container.start_encoding()  # no audio at all: still a valid, empty file
        self._container.close()
        return self._sink.drain() if self._streaming else self._sink.getvalue()

    def close(self) -> None:
        """Frees the muxer and the codec now, without finishing the file (a stream that was
        cut: no trailer is written, since the sink is closed first); idempotent."""
        container, self._container, self._stream = self._container, None, None
        self._sink.close()
        if container is not None:
            container.close()
