"""The official ``openai`` SDK against a real server on loopback: ``POST /v1/audio/speech`` and
``GET /v1/models`` behave as OpenAI documents them."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.decode import decode

TEXT = "The quick brown fox jumps over the lazy dog. It was a bright cold day in April."
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage",
                 "shimmer", "verse", "marin", "cedar")


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)


def _seconds(body: bytes, fmt: str, rate: int | None = None) -> float:
    samples, sr = decode(body, fmt, rate)
    return len(samples) / sr


def test_default_format_is_mp3(client) -> None:
    resp = client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT)
    assert resp.response.headers["content-type"] == "audio/mpeg"
    assert _seconds(resp.content, "mp3") > 1.0


def test_pcm_is_24khz_s16le(client) -> None:
    resp = client.audio.speech.create(model="tts-1", voice="nova", input=TEXT,
                                      response_format="pcm")
    assert resp.response.headers["x-sample-rate"] == "24000"
    wav = client.audio.speech.create(model="tts-1", voice="nova", input=TEXT,
                                     response_format="wav")
    samples, rate = decode(wav.content, "wav")
    # The same audio, resampled: 24 kHz pcm lasts as long as the wav at the voice's own rate.
    assert len(resp.content) % 2 == 0
    assert len(resp.content) / 2 / 24000 == pytest.approx(len(samples) / rate, rel=0.02)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_every_response_format_decodes(client, fmt: str) -> None:
    resp = client.audio.speech.create(model="gpt-4o-mini-tts", voice="coral", input=TEXT,
                                      response_format=fmt)
    rate = int(resp.response.headers["x-sample-rate"])
    assert _seconds(resp.content, fmt, rate) > 1.0


def test_every_openai_voice_resolves(client) -> None:
    seen = set()
    for voice in OPENAI_VOICES:
        resp = client.audio.speech.create(model="tts-1", voice=voice, input="Hello.",
                                          response_format="wav")
        seen.add(resp.response.headers["x-voice"])
    assert len(seen) > 1  # mapped onto several catalog voices, not one catch-all


def test_streaming_response(client, tmp_path: Path) -> None:
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="onyx", input=TEXT, response_format="mp3") as resp:
        parts = list(resp.iter_bytes())
    assert _seconds(b"".join(parts), "mp3") > 1.0
    target = tmp_path / "speech.mp3"
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="onyx", input=TEXT) as resp:
        resp.stream_to_file(target)
    assert _seconds(target.read_bytes(), "mp3") > 1.0


def test_async_client(server) -> None:
    async def run() -> list[bytes]:
        async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x") as aclient:
            results = await asyncio.gather(*[aclient.audio.speech.create(
                model="tts-1", voice="sage", input=TEXT, response_format="flac")
                for _ in range(3)])
            return [r.content for r in results]
    for body in asyncio.run(run()):
        assert _seconds(body, "flac") > 1.0


@pytest.mark.parametrize("speed", [0.25, 0.5, 2.0, 4.0])
def test_speed_changes_duration(client, speed: float) -> None:
    def duration(speed: float) -> float:
        return _seconds(client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT,
                                                   response_format="wav", speed=speed).content,
                        "wav")
    ratio = duration(speed) / duration(1.0)
    print(f"speed {speed}: duration ratio {ratio:.3f}")
    assert ratio == pytest.approx(1 / speed, rel=0.2)


def test_sse_events(server) -> None:
    body = {"model": "gpt-4o-mini-tts", "voice": "alloy", "input": TEXT,
            "response_format": "pcm", "stream_format": "sse"}
    with httpx.stream("POST", server.url + "/v1/audio/speech", json=body, timeout=30) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data: "):]) for line in resp.iter_lines()
                  if line.startswith("data: ")]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) > 1 and events[-1]["type"] == "speech.audio.done"
    assert [e["type"] for e in events].count("speech.audio.done") == 1
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert _seconds(audio, "pcm", 24000) > 1.0
    use = events[-1]["usage"]
    assert use["input_tokens"] > 0 and use["output_tokens"] > 0
    assert use["total_tokens"] == use["input_tokens"] + use["output_tokens"]


def test_sse_through_sdk(client) -> None:
    with client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="alloy", input="Hello there.", stream_format="sse",
            response_format="mp3") as resp:
        text = b"".join(resp.iter_bytes()).decode()
    assert text.startswith("data: ") and '"speech.audio.done"' in text


def test_instructions_never_fail_and_are_reported(client) -> None:
    plain = client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT,
                                       response_format="wav")
    slow = client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT,
                                      response_format="wav", instructions="Speak slowly.")
    assert slow.response.headers["x-instructions-applied"] == "speed=0.85"
    assert _seconds(slow.content, "wav") > _seconds(plain.content, "wav") * 1.1
    odd = client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.",
                                     instructions="Sound like a pirate \u2620 " * 50)
    assert odd.response.headers["x-instructions-applied"] == "none"


def test_errors_are_openai_errors(client) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, speed=10)
    assert caught.value.code == "invalid_speed" and caught.value.param == "speed"
    assert caught.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(model="tts-1", voice="nobody", input=TEXT)
    assert caught.value.code == "unknown_speaker" and caught.value.param == "voice"
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT,
                                   response_format="wma")  # type: ignore[arg-type]
    assert caught.value.param == "response_format"


def test_models_list(client, server) -> None:
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert server.health()["model_version"] in ids and "espeak" in ids
    assert all(m.object == "model" and m.owned_by == "veena" for m in models.data)


@pytest.mark.parametrize("body,code,param", [
    ({"sample_rate": "44100"}, "invalid_request", "sample_rate"),
    ({"sample_rate": 0}, "unsupported_sample_rate", "sample_rate"),
    ({"format": "wav", "bitrate": 128000}, "unsupported_bitrate", "bitrate"),
    ({"language": "xx"}, "unsupported_language", "language"),
    ({"speaker": "q" * 100_000}, "unknown_speaker", "speaker"),
    ({"speed": 0.1}, "invalid_speed", "speed"),
])
def test_generate_refuses_lenient_input(server, body: dict, code: str, param: str) -> None:
    resp = httpx.post(server.url + "/v1/tts/generate", json={"text": "Hello.", **body}, timeout=30)
    assert resp.status_code == 400 and len(resp.content) < 2000
    error = resp.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (code, param, "invalid_request_error")


def test_generate_speed(server) -> None:
    def duration(**extra) -> float:
        resp = httpx.post(server.url + "/v1/tts/generate", timeout=30,
                          json={"text": TEXT, "format": "wav", "stream": False, **extra})
        return _seconds(resp.content, "wav")
    assert duration(speed=2.0) / duration() == pytest.approx(0.5, abs=0.12)


class _TonePlugin:
    """Registers a voice with no rate control of its own (a 440 Hz tone, 0.5 s a chunk)."""

    from veena.platform.hookspecs import hookimpl

    @hookimpl
    def veena_register_synthesizers(self, runtime):
        from tests.support.tone import ToneSynthesizer
        return [ToneSynthesizer(seconds_per_chunk=0.5)]


def test_speed_without_rate_control_is_a_pitch_preserving_stretch(tmp_path, monkeypatch) -> None:
    import numpy as np

    from tests.support.inprocess import ThreadServer
    from veena.platform.app import create_app
    from veena.platform.config import parse_config

    monkeypatch.setenv("VEENA_DATA_DIR", str(tmp_path))
    app = create_app(parse_config({"stages": {"synthesizer": "tone"}}),
                     plugins=[("tone", _TonePlugin())])
    srv = ThreadServer(app)
    try:
        sdk = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        results = {}
        for speed in (1.0, 2.0, 0.5):
            body = sdk.audio.speech.create(model="tts-1", voice="alloy", input=TEXT,
                                           response_format="wav", speed=speed).content
            samples, rate = decode(body, "wav")
            peak = np.argmax(np.abs(np.fft.rfft(samples))) * rate / len(samples)
            results[speed] = (len(samples) / rate, peak)
    finally:
        srv.stop()
    normal = results[1.0][0]
    assert results[2.0][0] / normal == pytest.approx(0.5, rel=0.05)
    assert results[0.5][0] / normal == pytest.approx(2.0, rel=0.05)
    assert all(peak == pytest.approx(440, abs=5) for _, peak in results.values())


@pytest.mark.parametrize("body,param", [({"voice": "alloy"}, "input"),
                                        ({"input": "Hi.", "speed": "fast"}, "speed"),
                                        ({"input": "Hi.", "speed": "2"}, "speed")])
def test_speech_validation_errors_name_the_openai_field(server, body: dict, param: str) -> None:
    resp = httpx.post(server.url + "/v1/audio/speech", json=body, timeout=30)
    assert resp.status_code == 400
    assert (resp.json()["error"]["code"], resp.json()["error"]["param"]) == ("invalid_request", param)


class _SlowTonePlugin:
    """A voice that takes 40 ms per 100 ms block, so a whole answer takes a while."""

    from veena.platform.hookspecs import hookimpl

    @hookimpl
    def veena_register_synthesizers(self, runtime):
        from tests.support.tone import ToneSynthesizer
        return [ToneSynthesizer(seconds_per_chunk=0.5, delay=0.04)]


def test_sse_streams_while_synthesizing(tmp_path, monkeypatch) -> None:
    import time

    from tests.support.inprocess import ThreadServer
    from veena.platform.app import create_app
    from veena.platform.config import parse_config

    monkeypatch.setenv("VEENA_DATA_DIR", str(tmp_path))
    app = create_app(parse_config({"stages": {"synthesizer": "tone"},
                                   "plugins": {"chunk": {"min_chars": 0, "short_chars": 0}}}),
                     plugins=[("tone", _SlowTonePlugin())])
    srv = ThreadServer(app)
    try:
        body = {"input": "One. Two. Three. Four. Five. Six.", "voice": "alloy",
                "response_format": "pcm", "stream_format": "sse"}
        start, arrivals = time.perf_counter(), []
        with httpx.stream("POST", srv.url + "/v1/audio/speech", json=body, timeout=30) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    arrivals.append((time.perf_counter() - start, json.loads(line[6:])["type"]))
    finally:
        srv.stop()
    assert arrivals[-1][1] == "speech.audio.done"
    # 6 chunks x 5 blocks x 40 ms: about 1.2 s in all; the first audio comes long before.
    assert arrivals[0][1] == "speech.audio.delta" and arrivals[0][0] < arrivals[-1][0] / 3
