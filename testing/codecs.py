"""Contract suite for codecs: a third party's output format passes the tests the built-in ones
pass.

Subclass ``CodecContract`` and give it a ``codec`` fixture; override ``decode`` when PyAV cannot
read the format (it returns the body's mono samples as floats in -1..1 and their rate)::

    import pytest
    from veena.testing.codecs import CodecContract

    class TestMyCodec(CodecContract):
        @pytest.fixture
        def codec(self):
            return MyCodec()

        def decode(self, body, name, sample_rate):
            return np.frombuffer(body, dtype=np.int8) / 128.0, sample_rate

What is checked, at every rate the codec lists: a streaming encoder hands out bytes before the
stream ends; streamed and whole bodies decode to all the audio, its last samples included;
rates it does not list and (for ``takes_bitrate`` codecs) impossible bitrates are refused with
ValueError. The built-in codecs run it in ``tests/unit/test_contracts.py``.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from veena.codecs.base import Codec
from veena.platform.audio import PCM

__all__ = ["CodecContract", "tone_blocks"]

BLOCK_S = 0.02
SECONDS = 1.0
TAIL_S = 0.02
"""The last stretch of the input whose audio must be in the decoded body."""
RAW_DEMUXERS = {"pcm": "s16le", "mulaw": "mulaw", "alaw": "alaw"}


def decode(body: bytes, codec: str, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """(mono float samples, rate) of a complete body, decoded with PyAV; raw formats need
    their ``sample_rate``; several channels are averaged."""
    import av

    fmt = RAW_DEMUXERS.get(codec)
    options = {"sample_rate": str(sample_rate), "ch_layout": "mono"} if fmt else {}
    with av.open(io.BytesIO(body), format=fmt, options=options) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray() for f in container.decode(stream)]
        rate = stream.codec_context.sample_rate
    if not frames:
        return np.zeros(0, dtype=np.float32), rate
    data = np.concatenate([f.reshape(f.shape[0], -1) if f.ndim == 2 else f[None] for f in frames],
                          axis=1)
    data = data[0] if data.shape[0] == 1 else data.mean(axis=0)
    if data.dtype == np.int16:
        data = data.astype(np.float32) / 32768.0
    return data.astype(np.float32), rate


def tone_blocks(rate: int, seconds: float = SECONDS) -> list[PCM]:
    """A 440 Hz tone at 0.3 of full scale, in 20 ms blocks at ``rate``."""
    t = np.arange(int(rate * seconds)) / rate
    signal = 0.3 * np.sin(2 * np.pi * 440 * t)
    step = max(1, int(rate * BLOCK_S))
    return [PCM.from_float(signal[i:i + step], rate) for i in range(0, len(signal), step)]


class CodecContract:
    """What every codec must do; subclass it with a ``codec`` fixture."""

    @pytest.fixture
    def codec(self) -> Codec:
        raise NotImplementedError("give the suite a `codec` fixture")

    def decode(self, body: bytes, name: str, sample_rate: int) -> tuple[np.ndarray, int]:
        """The body's mono samples as floats and the rate they were decoded at (an Opus
        decoder always answers at 48 kHz); a suite may override it for its own formats."""
        return decode(body, name, sample_rate)

    def test_declares_what_it_accepts(self, codec):
        assert isinstance(codec, Codec)
        assert isinstance(codec.name, str) and codec.name and isinstance(codec.media_type, str)
        assert isinstance(codec.aliases, tuple)
        assert codec.sample_rates and all(isinstance(r, int) and r > 0 for r in codec.sample_rates)
        assert codec.default_sample_rate is None or codec.default_sample_rate in codec.sample_rates

    def test_refuses_rates_it_does_not_list(self, codec):
        for rate in (1, 7999, 12345, 10 ** 6):
            if rate not in codec.sample_rates:
                with pytest.raises(ValueError):
                    codec.open(rate, streaming=True)

    def test_refuses_impossible_bitrates(self, codec):
        if not getattr(codec, "takes_bitrate", False):
            pytest.skip("the codec takes no bitrate")
        for rate in codec.sample_rates:
            codec.check_bitrate(rate, None)
            for bitrate in (1, 10 ** 9):
                with pytest.raises(ValueError):
                    codec.check_bitrate(rate, bitrate)

    def test_streams_before_the_end(self, codec):
        for rate in codec.sample_rates:
            encoder = codec.open(rate, streaming=True)
            blocks = tone_blocks(rate)
            early = sum(len(encoder.encode(b)) for b in blocks[: len(blocks) // 2])
            encoder.finish()
            assert early > 0, f"{codec.name} at {rate} Hz sent nothing in the first half second"

    @pytest.mark.parametrize("streaming", [True, False], ids=["streamed", "whole"])
    def test_decodes_to_the_last_sample(self, codec, streaming):
        for rate in codec.sample_rates:
            encoder = codec.open(rate, streaming=streaming)
            blocks = tone_blocks(rate)
            body = b"".join(encoder.encode(b) for b in blocks) + encoder.finish()
            decoded, out_rate = self.decode(body, codec.name, rate)
            n = sum(len(b.samples) for b in blocks) * out_rate // rate
            assert len(decoded) >= n - int(out_rate * 0.005), \
                f"{codec.name} at {rate} Hz: {len(decoded)} of {n} samples decoded"
            tail = decoded[n - int(out_rate * TAIL_S):n]
            assert np.sqrt(np.mean(tail ** 2)) > 0.1, \
                f"{codec.name} at {rate} Hz: the last {TAIL_S * 1000:.0f} ms are missing"
