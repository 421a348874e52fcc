"""The eight built-in output formats as ``Codec`` objects (see ``veena.codecs.base``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from veena.codecs.base import Encoder
from veena.codecs.container import ContainerEncoder, ContainerFormat
from veena.codecs.raw import RAW_ENCODERS, RawEncoder
from veena.codecs.wav import WavEncoder

COMMON_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
MPEG_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
G711_RATES = (8000, 16000)

# Speed settings for the 250x-real-time target at 16 kHz. CPU time on the project's shared
# 2-core VM, speech-like input (docs/benchmarks.md; runs vary up to 1.7x with load).
OPUS_COMPLEXITY = 4
"""libopus complexity 0..10: 10 (its default) ~64x real time, 5 ~190x, 4 ~210-330x (3 is no
faster)."""
OPUS_FRAME_MS = 40
"""Opus frames (and, when streaming, Ogg pages) of 40 ms rather than libopus's 20: half the
packets and pages to make and mux, 1.1-1.3x faster in same-run comparisons at 16 kHz, and half
the Ogg overhead (37 instead of 44 kbit/s for 32k). A stream's lag goes from 27 to 47 ms;
60 ms frames would gain nothing more and lag 107 ms."""
MP3_QUALITY = 7
"""LAME ``-q`` 0..9 (lower is better): 3 (LAME's default) ~186x, 5 ~217x, 7 ~290-500x. 7 keeps
the psychoacoustic model but skips noise shaping."""
AAC_CODER = "fast"
"""FFmpeg's AAC coder: ``twoloop`` (FFmpeg 9's default) ~45x, ``fast`` ~125-220x, the fastest
it has."""
AAC_OPTIONS = {"aac_coder": AAC_CODER, "aac_pns": "0", "aac_tns": "0"}
"""Perceptual noise substitution and temporal noise shaping off: ~9% faster in same-run
comparisons (195x -> 213x at 16 kHz), same bitrate; they matter little for speech."""
AAC_QUALITY = 1.3
"""Without a requested bitrate, AAC is encoded in FFmpeg's quality (VBR) mode at this ``q``
(0.1-2). On eSpeak NG speech it gives what the 64 kbit/s target gave (about 75 kbit/s, since
that target overshoots; segmental SNR 33 against 31-33 dB) at 1.6-1.8x the speed: in target
mode the encoder re-encodes frames to chase the rate. A requested bitrate still sets it."""
AAC_VBR_OPTIONS = {"flags": "+qscale", "global_quality": str(round(AAC_QUALITY * 118))}
"""``global_quality`` is ``q`` times FFmpeg's FF_QP2LAMBDA (118)."""
MP3_DEFAULT_RATE_FLOOR = 24000
"""Without a requested rate, mp3 is sent at 24 kHz or the voice's own rate if higher (24 kHz
is OpenAI's speech API rate too): MPEG-2 layer III frames are 24 ms there against 36 ms at
16 kHz, so a stream's lag is 94 ms instead of 137 ms, at the same 64 kbit/s and still
~380-410x real time from 16 kHz input. A 16 or 22.05 kHz voice gains no audio band from it,
only the shorter frames."""
AAC_DEFAULT_RATE_FLOOR = 32000
"""Without a requested rate, AAC is sent at 32 kHz or the voice's own rate if higher: its
frames are 1024 samples and FFmpeg's encoder holds one frame back, so a stream lags 2-3
frames behind its audio, 184 ms at 16 kHz, 128 ms at 24 kHz, 96 ms at 32 kHz."""

FLAC_BLOCK_SIZES = (192, 256, 512, 576, 1024, 1152, 2048, 2304, 4096, 4608)
FLAC_STREAM_BLOCK_SECONDS = 0.05
"""Streaming FLAC uses the largest standard block of at most 50 ms, so a block leaves at most
50 ms after its first sample arrived (FFmpeg's default is about 105 ms)."""


@dataclass(frozen=True, slots=True)
class AudioCodec:
    """A ``Codec``: metadata plus ``make(sample_rate, streaming, bitrate)`` building encoders."""

    name: str
    media_type: str
    aliases: tuple[str, ...]
    sample_rates: tuple[int, ...]
    default_sample_rate: int | None
    make: Callable[[int, bool, int | None], Encoder]
    container: ContainerFormat | None = None
    default_rate_floor: int = 0
    """Without a fixed default, the lowest rate a request naming none is sent at
    (``veena.codecs.base.default_rate``)."""
    encode_inline: bool = False
    """True when a block costs microseconds to encode (raw samples, G.711, WAV): the pipeline
    encodes it on the event loop instead of handing it to a worker thread and back."""

    @property
    def takes_bitrate(self) -> bool:
        """Whether requests may set a bitrate (the container format declares a range)."""
        return self.container is not None and self.container.bitrate_range is not None

    def check_bitrate(self, sample_rate: int, bitrate: int | None) -> None:
        """ValueError naming the valid range when ``bitrate`` is impossible at this rate."""
        if self.container is not None:
            self.container.check_bitrate(self.name, sample_rate, bitrate)

    def open(self, sample_rate: int, *, streaming: bool, bitrate: int | None = None) -> Encoder:
        """A fresh encoder; ValueError for a rate not in ``sample_rates`` or a bad bitrate.
        Formats without a bitrate (wav, pcm, mulaw, alaw, flac) ignore ``bitrate``."""
        if sample_rate not in self.sample_rates:
            raise ValueError(f"{self.name} cannot be sent at {sample_rate} Hz; "
                             f"valid rates: {', '.join(map(str, self.sample_rates))}")
        return self.make(sample_rate, streaming, bitrate)


def _raw(name: str) -> Callable[[int, bool, int | None], Encoder]:
    return lambda rate, streaming, bitrate: RawEncoder(RAW_ENCODERS[name], rate)


def _container(name: str, fmt: ContainerFormat) -> Callable[[int, bool, int | None], Encoder]:
    def make(rate: int, streaming: bool, bitrate: int | None) -> Encoder:
        return ContainerEncoder(fmt, rate, streaming=streaming,
                                bitrate=fmt.check_bitrate(name, rate, bitrate))
    return make


def _flac_options(rate: int, streaming: bool, bitrate: int | None) -> dict[str, str]:
    if not streaming:
        return {}
    limit = rate * FLAC_STREAM_BLOCK_SECONDS
    return {"frame_size": str(max(b for b in FLAC_BLOCK_SIZES if b <= limit))}


def _mp3_bitrates(rate: int) -> tuple[int, int]:
    """LAME's range per MPEG version: 1 (32-48 kHz), 2 (16-24 kHz), 2.5 (8-12 kHz)."""
    return (32_000, 320_000) if rate >= 32_000 else (8_000, 160_000 if rate >= 16_000 else 64_000)


def _mp3_default_bitrate(rate: int) -> int:
    return 128_000 if rate >= 32_000 else 64_000 if rate >= 16_000 else 32_000


OPUS = ContainerFormat(
    muxer="ogg", encoder="libopus",
    # The Ogg muxer otherwise holds about one second of audio per page.
    streaming_muxer_options={"page_duration": str(OPUS_FRAME_MS * 1000)},
    # Constrained VBR: below complexity 7 libopus skips its signal analysis and unconstrained VBR
    # overshoots (measured 39-56 kbit/s for 32k); constrained stays within ~3%.
    codec_options=lambda rate, streaming, bitrate: {"compression_level": str(OPUS_COMPLEXITY),
                                                    "vbr": "constrained",
                                                    "frame_duration": str(OPUS_FRAME_MS)},
    # FFmpeg's libopus wrapper takes 500..256000 bits/s per channel; below 6 kbit/s is unusable.
    bitrate_range=lambda rate: (6_000, 256_000), default_bitrate=lambda rate: 32_000)

MP3 = ContainerFormat(
    muxer="mp3", encoder="libmp3lame",
    # No ID3v2 tag: the body starts with the first MPEG frame (whole files still get the
    # Xing/LAME frame with the exact length and encoder delay).
    muxer_options={"id3v2_version": "0"},
    streaming_muxer_options={"write_xing": "0"},
    # Without the bit reservoir LAME hands out each frame about one frame sooner.
    codec_options=lambda rate, streaming, bitrate: {"compression_level": str(MP3_QUALITY),
                                                    **({"reservoir": "0"} if streaming else {})},
    bitrate_range=_mp3_bitrates, default_bitrate=_mp3_default_bitrate)

FLAC = ContainerFormat(
    muxer="flac", encoder="flac",
    # No 8 KiB PADDING block: the first bytes are the stream header and the first frame.
    muxer_options={"metadata_header_padding": "0"},
    codec_options=_flac_options)

AAC = ContainerFormat(
    muxer="adts", encoder="aac",
    codec_options=lambda rate, streaming, bitrate: {**AAC_OPTIONS,
                                                    **({} if bitrate else AAC_VBR_OPTIONS)},
    # FFmpeg's AAC-LC encoder caps a mono frame at 6144 bits per 1024 samples.
    bitrate_range=lambda rate: (8_000, 6 * rate))

CODECS: tuple[AudioCodec, ...] = (
    AudioCodec("wav", "audio/wav", ("wave",), COMMON_RATES, None,
               lambda rate, streaming, bitrate: WavEncoder(rate, streaming=streaming),
               encode_inline=True),
    # audio/pcm, not audio/L16: L16 (RFC 2586) is big-endian and this is s16le.
    AudioCodec("pcm", "audio/pcm", ("s16le", "raw"), COMMON_RATES, None, _raw("pcm"),
               encode_inline=True),
    AudioCodec("mulaw", "audio/basic", ("ulaw", "g711_ulaw", "pcm_mulaw"), G711_RATES, 8000,
               _raw("mulaw"), encode_inline=True),
    AudioCodec("alaw", "audio/x-alaw-basic", ("g711_alaw", "pcm_alaw"), G711_RATES, 8000,
               _raw("alaw"), encode_inline=True),
    AudioCodec("opus", "audio/ogg; codecs=opus", ("ogg", "ogg_opus"), OPUS_RATES, None,
               _container("opus", OPUS), OPUS),
    AudioCodec("mp3", "audio/mpeg", ("mpeg",), MPEG_RATES, None, _container("mp3", MP3), MP3,
               default_rate_floor=MP3_DEFAULT_RATE_FLOOR),
    AudioCodec("flac", "audio/flac", (), COMMON_RATES, None, _container("flac", FLAC), FLAC),
    AudioCodec("aac", "audio/aac", ("adts",), MPEG_RATES, None, _container("aac", AAC), AAC,
               default_rate_floor=AAC_DEFAULT_RATE_FLOOR),
)
"""Every built-in codec, registered by the ``codecs`` plugin."""
