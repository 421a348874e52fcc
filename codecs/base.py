"""The contract every output codec implements: streaming PCM in, container bytes out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from veena.platform.audio import PCM


@runtime_checkable
class Encoder(Protocol):
    """One request's encoder. Not thread-safe; used from one thread at a time (a worker thread,
    or the event loop for codecs that encode inline)."""

    def encode(self, block: PCM) -> bytes:
        """Encodes one block (resampling to the output rate if needed); returns ready bytes."""

    def finish(self) -> bytes:
        """Flushes everything held back; the stream is complete and decodable afterwards."""


@runtime_checkable
class Codec(Protocol):
    """A named output format: what it accepts and how to open an encoder.

    Optional: ``encode_inline = True`` on a codec whose blocks cost microseconds to encode
    makes the pipeline encode them on the event loop; without it every block goes to a worker
    thread, which is what CPU-bound encoders need. ``default_rate_floor = N``: without a fixed
    default, a voice slower than N Hz is sent at N Hz or more by default (see
    ``default_rate``). ``takes_bitrate = True``: requests may set a bitrate (checked with
    ``check_bitrate``); without it a request naming one gets 400 ``unsupported_bitrate``."""

    name: str
    media_type: str
    aliases: tuple[str, ...]
    sample_rates: tuple[int, ...]
    default_sample_rate: int | None
    """The rate sent when a request names none; None: the voice's own (see ``default_rate``)."""

    def check_bitrate(self, sample_rate: int, bitrate: int | None) -> None:
        """Raises ValueError, naming the valid range, for a bitrate this format cannot use."""

    def open(self, sample_rate: int, *, streaming: bool, bitrate: int | None = None) -> Encoder:
        """A fresh encoder writing ``sample_rate`` Hz mono output."""


def default_rate(codec: Codec, voice_rate: int) -> int:
    """The rate a request that names none is sent at: the codec's fixed default, else the
    voice's own rate raised to the codec's ``default_rate_floor``, else the codec's next rate
    up (so the voice's whole band is kept), else its highest."""
    if codec.default_sample_rate is not None:
        return codec.default_sample_rate
    wanted = max(voice_rate, getattr(codec, "default_rate_floor", 0))
    return min((r for r in codec.sample_rates if r >= wanted), default=max(codec.sample_rates))
