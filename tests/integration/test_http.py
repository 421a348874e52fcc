"""The HTTP API against a real server on loopback (bodies read chunk by chunk)."""

import struct
import time

import httpx
import pytest

from tests.support.decode import decode

FORMATS = ["wav", "pcm", "mulaw", "alaw", "opus", "mp3", "flac", "aac"]
SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank. "


def post(server, **body):
    return httpx.post(server.url + "/v1/tts/generate", json=body, timeout=60)


def stream_chunks(server, body, headers=None):
    """(response, [(arrival seconds, chunk)]) reading the body as it arrives."""
    arrivals = []
    t0 = time.perf_counter()
    with httpx.stream("POST", server.url + "/v1/tts/generate", json=body, timeout=120,
                      headers=headers or {}) as resp:
        for chunk in resp.iter_raw():
            arrivals.append((time.perf_counter() - t0, chunk))
    return resp, arrivals


def test_health_voices_formats_and_schema(server):
    health = server.health()
    assert health["status"] == "ok" and health["synthesizer"] == "espeak"
    assert set(FORMATS) <= set(health["formats"])
    voices = httpx.get(server.url + "/v1/voices").json()
    assert {v["name"] for v in voices} == {"kavya", "agastya", "maitri", "vinaya"}
    formats = {f["name"]: f for f in httpx.get(server.url + "/v1/formats").json()}
    assert formats["opus"]["sample_rates"] == [8000, 12000, 16000, 24000, 48000]
    schema = httpx.get(server.url + "/schema/openapi.json").json()
    assert "/v1/tts/generate" in schema["paths"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_streams_while_synthesis_runs(server, fmt):
    text = SENTENCE * 60  # about 4 minutes of speech
    resp, arrivals = stream_chunks(server, {"text": text, "format": fmt})
    assert resp.status_code == 200, resp.read()
    assert resp.headers["x-accel-buffering"] == "no"
    assert resp.headers["cache-control"] == "no-cache"
    rate = int(resp.headers["x-sample-rate"])
    first, last = arrivals[0][0], arrivals[-1][0]
    assert len(arrivals) > 10, "body arrived in too few pieces to be streamed"
    assert first < 0.3 * last, f"first byte at {first:.3f}s of {last:.3f}s: not streamed"
    body = b"".join(c for _, c in arrivals)
    samples, decoded_rate = decode(body, fmt, rate)
    assert decoded_rate == (48000 if fmt == "opus" else rate)  # Opus decoders run at 48 kHz
    assert len(samples) / decoded_rate > 120


@pytest.mark.parametrize("fmt", FORMATS)
def test_whole_body_matches_stream_duration(server, fmt):
    text = SENTENCE * 3
    whole = post(server, text=text, format=fmt, stream=False)
    assert whole.status_code == 200
    duration = float(whole.headers["x-audio-duration-s"])
    assert float(whole.headers["x-ttfb-ms"]) > 0 and float(whole.headers["x-rtf"]) > 0
    rate = int(whole.headers["x-sample-rate"])
    samples, decoded_rate = decode(whole.content, fmt, rate)
    assert decoded_rate == (48000 if fmt == "opus" else rate)  # Opus decoders run at 48 kHz
    assert abs(len(samples) / decoded_rate - duration) < 0.1
    _, arrivals = stream_chunks(server, {"text": text, "format": fmt})
    streamed, _ = decode(b"".join(c for _, c in arrivals), fmt, rate)
    assert abs(len(streamed) - len(samples)) / decoded_rate < 0.1


def test_wav_headers_streaming_vs_whole_body(server):
    whole = post(server, text="Hello there.", format="wav", stream=False).content
    riff, data = struct.unpack("<I", whole[4:8])[0], struct.unpack("<I", whole[40:44])[0]
    assert riff == len(whole) - 8 and data == len(whole) - 44
    _, arrivals = stream_chunks(server, {"text": "Hello there.", "format": "wav"})
    streamed = b"".join(c for _, c in arrivals)
    assert streamed[4:8] == b"\xff\xff\xff\xff" and streamed[40:44] == b"\xff\xff\xff\xff"
    # eSpeak NG's output varies by a sample or so between runs; the framing must not.
    assert abs(len(streamed) - len(whole)) <= 64


@pytest.mark.parametrize("name,codec,rate", [("mp3_44100_128", "mp3", 44100),
                                             ("pcm_16000", "pcm", 16000),
                                             ("ulaw_8000", "mulaw", 8000),
                                             ("alaw_8000", "alaw", 8000),
                                             ("opus_48000_64", "opus", 48000)])
def test_client_format_names(server, name, codec, rate):
    resp = post(server, text="Namaste.", format=name, stream=False)
    assert resp.status_code == 200
    assert resp.headers["x-sample-rate"] == str(rate)
    samples, decoded_rate = decode(resp.content, codec, rate)
    assert decoded_rate == rate and len(samples) > rate * 0.2


@pytest.mark.parametrize("fmt,rate", [("opus", 24000), ("flac", 22050), ("mp3", 24000),
                                      ("aac", 32000), ("mulaw", 8000)])
def test_default_rate_is_the_voices_or_the_next_one_up(server, fmt, rate):
    # eSpeak NG speaks at 22050 Hz; Opus has no such rate and takes 24000, not 48000; mp3 and
    # aac are raised to their floors (24 and 32 kHz), G.711 has a fixed 8 kHz.
    resp = post(server, text="Hello.", format=fmt, stream=False)
    assert resp.headers["x-sample-rate"] == str(rate)


def test_sample_rate_option_resamples(server):
    resp = post(server, text="Hello.", format="flac", sample_rate=48000, stream=False)
    _, rate = decode(resp.content, "flac")
    assert rate == 48000


def test_hindi_telugu_and_aliases(server):
    for text, speaker in [("नमस्ते, आप कैसे हैं?", "Kavya"), ("మీరు ఎలా ఉన్నారు?", "VEENA3_MAITRI")]:
        resp = post(server, text=text, speaker=speaker, stream=False)
        assert resp.status_code == 200 and len(resp.content) > 10_000


def test_openai_compatible_route(server):
    resp = httpx.post(server.url + "/v1/audio/speech",
                      json={"model": "veena3", "input": "Hello.", "voice": "agastya",
                            "response_format": "mp3"}, timeout=30)
    assert resp.status_code == 200 and resp.headers["content-type"] == "audio/mpeg"


@pytest.mark.parametrize("body,code,field", [
    ({"text": "hi", "speaker": "nobody"}, "unknown_speaker", "valid"),
    ({"text": "hi", "format": "wma"}, "unsupported_format", "valid"),
    ({"text": "hi", "format": "opus", "sample_rate": 44100}, "unsupported_sample_rate", "valid"),
    ({"text": "hi", "format": "opus", "bitrate": 400_000}, "unsupported_bitrate", None),
    ({"text": "x" * 50_001}, "text_too_long", "max_chars"),
    ({"text": "   "}, "empty_text", None),
    ({"text": "hi", "colour": "blue"}, "invalid_request", None),
    ({"text": "hi", "temperature": 9}, "invalid_request", None),
    ({"speaker": "kavya"}, "invalid_request", None),
])
def test_bad_input_gets_a_json_error(server, body, code, field):
    resp = post(server, **body)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == code and error["message"]
    assert error["request_id"] == resp.headers["x-request-id"]
    if field:
        assert error[field]


def test_invalid_json_and_unknown_route(server):
    resp = httpx.post(server.url + "/v1/tts/generate", content=b"{nope",
                      headers={"content-type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_request"
    resp = httpx.get(server.url + "/v1/nothing")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


def test_client_request_id_is_echoed(server):
    resp = httpx.post(
        server.url + "/v1/tts/generate", json={"text": "Hi.", "stream": False},
        headers={"X-Request-ID": "abc-123"}, timeout=30)
    assert resp.status_code == 200
    assert resp.headers["x-request-id"] == "abc-123"
    assert resp.headers["x-model-version"]


def test_disconnect_stops_synthesis(server):
    body = {"text": SENTENCE * 400, "format": "mp3"}  # ~25 minutes of speech
    with httpx.stream("POST", server.url + "/v1/tts/generate", json=body, timeout=60) as resp:
        chunks = resp.iter_raw()
        next(chunks)
        assert server.health()["active_streams"] >= 1
    deadline = time.monotonic() + 3
    while server.health()["active_streams"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.health()["active_streams"] == 0
    assert post(server, text="Still alive.", stream=False).status_code == 200
