"""The built-in codecs and synthesizers pass the contract suites of ``veena.testing`` (every
registered codec; eSpeak NG, the tone voice and the neural voice on a tiny random checkpoint)."""

from __future__ import annotations

import asyncio
import dataclasses

import msgspec
import numpy as np
import pytest

from tests.support.spark_checkpoint import tiny_checkpoint
from tests.support.tone import ToneSynthesizer
from veena.platform.audio import PCM
from veena.platform.config import parse_config
from veena.platform.job import SamplingOptions
from veena.platform.plugins import build_runtime
from veena.testing.codecs import CodecContract
from veena.testing.synthesizers import SynthesizerContract
from veena.speakers import Speaker

RUNTIME = build_runtime(parse_config({}))
CODECS = RUNTIME.codecs.names()


def test_every_built_in_codec_and_voice_is_covered():
    assert set(CODECS) >= {"wav", "pcm", "mulaw", "alaw", "opus", "mp3", "flac", "aac"}
    assert set(RUNTIME.synthesizers.names()) <= {"espeak", "spark"}


class TestBuiltInCodecs(CodecContract):
    @pytest.fixture(params=CODECS)
    def codec(self, request):
        return RUNTIME.codecs.get(request.param)


class TestTone(SynthesizerContract):
    @pytest.fixture
    def synthesizer(self):
        return ToneSynthesizer(seconds_per_chunk=0.1, delay=0.001)

    def in_use(self, synthesizer):
        return synthesizer.active


class TestEspeak(SynthesizerContract):
    @pytest.fixture
    def synthesizer(self):
        return RUNTIME.synthesizers.get("espeak")

    @pytest.fixture
    def speaker(self):
        return RUNTIME.speakers.resolve(RUNTIME.config.defaults.speaker)


@pytest.fixture(scope="module")
def spark_loop(tmp_path_factory):
    """The neural voice on a tiny random checkpoint, started on one loop of its own."""
    pytest.importorskip("torch")
    from veena.plugins.spark import Config
    from veena.plugins.spark.synthesizer import SparkSynthesizer

    ckpt = tiny_checkpoint(tmp_path_factory)
    cfg = msgspec.convert({"model_path": str(ckpt), "threads": 1, "slots": 2}, Config)
    synth = SparkSynthesizer(cfg, ckpt)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(synth.start(list(RUNTIME.speakers)))
    yield synth, loop
    loop.run_until_complete(synth.close())
    loop.close()


class TestSpark(SynthesizerContract):
    slots = 2

    @pytest.fixture
    def synthesizer(self, spark_loop):
        return spark_loop[0]

    @pytest.fixture
    def run(self, spark_loop):
        return spark_loop[1].run_until_complete

    @pytest.fixture
    def speaker(self):
        return RUNTIME.speakers.resolve(RUNTIME.config.defaults.speaker)


class _Leaky(ToneSynthesizer):
    """Frees its slot only when a stream runs to its end (not in ``finally``)."""

    async def stream(self, job):
        self.active += 1
        for i, _chunk in enumerate(job.chunks):
            job.mark_chunk_started(i)
            for _ in range(3):
                await asyncio.sleep(0.001)
                yield PCM.from_float(np.zeros(160), self.sample_rate)
        self.active -= 1


class _Hoarder:
    """Holds every byte until ``finish``: not a streaming codec."""

    def __init__(self, inner):
        self.inner, self.held = inner, b""

    def encode(self, block):
        self.held += self.inner.encode(block)
        return b""

    def finish(self):
        return self.held + self.inner.finish()


def test_the_suites_catch_a_leaking_voice_and_a_codec_that_does_not_stream():
    suite = TestTone()
    with pytest.raises(AssertionError, match="still hold resources"):
        suite.test_closing_part_way_frees_everything(_Leaky(), Speaker(name="x"),
                                                     SamplingOptions(), asyncio.run)
    wav = RUNTIME.codecs.get("wav")
    hoarding = dataclasses.replace(wav, make=lambda r, s, b: _Hoarder(wav.make(r, s, b)))
    with pytest.raises(AssertionError, match="sent nothing"):
        TestBuiltInCodecs().test_streams_before_the_end(hoarding)
