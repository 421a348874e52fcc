"""Issue 14 item 8: lenient input gets a 400 with a stable code, the valid choices and at most a
short prefix of what was sent; plus the speed and instructions rules of the pipeline."""

from __future__ import annotations

import msgspec
import pytest

from veena.platform.config import VeenaConfig, parse_config
from veena.platform.errors import ECHO_CHARS, VeenaError
from veena.platform.pipeline import Pipeline, decode_body
from veena.platform.speech_api import follow_instructions
from veena.platform.plugins import build_runtime
from veena.platform.schemas import GenerateRequest, SpeechRequest


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(build_runtime(VeenaConfig()))


def _refused(pipeline: Pipeline, **fields) -> VeenaError:
    with pytest.raises(VeenaError) as caught:
        pipeline.prepare(GenerateRequest(text="Hello there.", **fields), "rid")
    assert caught.value.status == 400
    return caught.value


def test_sample_rate_zero_is_refused_with_the_valid_rates(pipeline: Pipeline) -> None:
    error = _refused(pipeline, format="wav", sample_rate=0)
    assert error.code == "unsupported_sample_rate" and error.param == "sample_rate"
    assert 24000 in error.details["valid"]


def test_a_rate_as_a_string_is_refused() -> None:
    with pytest.raises(VeenaError) as caught:
        decode_body(b'{"text": "hi", "sample_rate": "44100"}', GenerateRequest)
    assert caught.value.code == "invalid_request" and caught.value.param == "sample_rate"
    with pytest.raises(VeenaError):
        decode_body(b'{"input": "hi", "speed": "2"}', SpeechRequest)


@pytest.mark.parametrize("fmt", ["wav", "pcm", "flac", "mulaw"])
def test_bitrate_on_a_format_without_one_is_refused(pipeline: Pipeline, fmt: str) -> None:
    error = _refused(pipeline, format=fmt, bitrate=128_000)
    assert error.code == "unsupported_bitrate" and error.param == "bitrate"
    assert error.details["valid_formats"] == ["aac", "mp3", "opus"]
    assert _refused(pipeline, format=f"{fmt}_8000_64").code == "unsupported_bitrate"


def test_bitrate_on_mp3_still_works(pipeline: Pipeline) -> None:
    job = pipeline.prepare(GenerateRequest(text="Hi.", format="mp3", bitrate=128_000), "rid")
    assert job.output.bitrate == 128_000


def test_unknown_language_is_refused_with_valid_codes(pipeline: Pipeline) -> None:
    error = _refused(pipeline, language="xx")
    assert error.code == "unsupported_language" and error.param == "language"
    assert {"en", "hi", "te"} <= set(error.details["valid"])
    assert pipeline.prepare(GenerateRequest(text="Hi.", language="en-IN"), "rid").language == "en-IN"


def test_long_unknown_speaker_is_echoed_as_a_short_prefix(pipeline: Pipeline) -> None:
    error = _refused(pipeline, speaker="z" * 100_000)
    assert error.code == "unknown_speaker" and error.param == "speaker"
    assert len(error.message) < ECHO_CHARS + 80 and "100000 characters" in error.message
    assert len(msgspec.json.encode(error.body("rid"))) < 1000


@pytest.mark.parametrize("speed", [0.0, 0.24, 4.01, 10.0, -1.0])
def test_speed_out_of_range(pipeline: Pipeline, speed: float) -> None:
    error = _refused(pipeline, speed=speed)
    assert error.code == "invalid_speed" and error.details["valid"] == {"min": 0.25, "max": 4.0}


def test_speed_in_range_reaches_the_job(pipeline: Pipeline) -> None:
    assert pipeline.prepare(GenerateRequest(text="Hi.", speed=2.0), "rid").speed == 2.0
    assert pipeline.prepare(GenerateRequest(text="Hi.", speed=1.0), "rid").speed == 1.0


class NoRate:
    name, sample_rate = "norate", 16000


def _norate_pipeline() -> Pipeline:
    class Plugin:
        from veena.platform.hookspecs import hookimpl

        @hookimpl
        def veena_register_synthesizers(self, runtime):
            return [NoRate()]

    cfg = parse_config({"stages": {"synthesizer": "norate"}})
    return Pipeline(build_runtime(cfg, extra=[("norate", Plugin())]))


def test_speed_without_rate_control_is_a_time_stretch() -> None:
    job = _norate_pipeline().prepare(GenerateRequest(text="Hi.", speed=1.5), "rid")
    assert job.tempo == 1.5


def test_espeak_does_what_its_rate_can_and_the_stretch_the_rest(pipeline: Pipeline) -> None:
    assert pipeline.prepare(GenerateRequest(text="Hi.", speed=2.0), "rid").tempo is None
    job = pipeline.prepare(GenerateRequest(text="Hi.", speed=4.0), "rid")
    assert job.tempo == pytest.approx(4.0 / (450 / 175))
    job = pipeline.prepare(GenerateRequest(text="Hi.", speed=0.25), "rid")
    assert job.tempo == pytest.approx(0.25 / (80 / 175))


@pytest.mark.parametrize("text,expected", [
    ("Speak slowly and calmly.", "speed=0.85"), ("very fast please", "speed=1.4"),
    ("read it at 1.5x", "speed=1.5"), ("like a pirate", "none"), ("", "none"),
    ("at 9x", "none"), ("breakfast time", "none")])
def test_instructions(pipeline: Pipeline, text: str, expected: str) -> None:
    espeak = pipeline.runtime.synthesizers.get("espeak")
    req, applied = follow_instructions(text, GenerateRequest(text="Hi."), espeak)
    assert applied == expected
    assert (req.speed is None) == (expected == "none")
    # An explicit speed wins over the instructions.
    assert follow_instructions(text, GenerateRequest(text="Hi.", speed=1.0), espeak)[1] == "none"


def test_openai_defaults() -> None:
    req = decode_body(b'{"input": "hi", "voice": {"id": "alloy"}, "response_format": "pcm"}',
                      SpeechRequest).to_generate()
    assert (req.format, req.sample_rate, req.speaker) == ("pcm", 24000, "alloy")
    assert decode_body(b'{"input": "hi", "extra": 1}', SpeechRequest).to_generate().format == "mp3"


def test_field_of_validation_messages() -> None:
    from veena.platform.pipeline import field_of
    assert field_of("Object missing required field `input`") == "input"
    assert field_of("Expected `int | null`, got `str` - at `$.sample_rate`") == "sample_rate"
    assert field_of("Expected `float`, got `str` - at `speed`") == "speed"
    assert field_of("request body is not valid JSON") is None
