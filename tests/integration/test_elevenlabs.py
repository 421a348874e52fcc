"""ElevenLabs-compatible ``POST /v1/text-to-speech/{voice_id}[/stream]`` against a real server on
loopback: output formats, streaming, ``voice_settings.speed``, ``xi-api-key`` and errors."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.decode import decode
from veena.plugins.elevenlabs.schema import OUTPUT_FORMATS

TEXT = "The quick brown fox jumps over the lazy dog. It was a bright cold day in April."
LONG = " ".join(f"Sentence number {i} is here, and it goes on for a while." for i in range(40))
DECODER = {"mp3": "mp3", "pcm": "pcm", "ulaw": "mulaw", "alaw": "alaw", "opus": "opus"}


def tts(server, voice: str = "kavya", *, stream: bool = False, headers: dict | None = None,
        params: dict | None = None, **body) -> httpx.Response:
    path = f"/v1/text-to-speech/{voice}" + ("/stream" if stream else "")
    return httpx.post(server.url + path, json={"text": TEXT, **body}, params=params,
                      headers=headers, timeout=60)


def error(resp: httpx.Response) -> tuple[int, str, str | None]:
    err = resp.json()["error"]
    return resp.status_code, err["code"], err["param"]


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
def test_every_output_format_decodes_at_its_rate(server, fmt: str) -> None:
    codec, rate = fmt.split("_")[0], int(fmt.split("_")[1])
    resp = tts(server, params={"output_format": fmt})
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-sample-rate"] == str(rate)
    samples, decoded_rate = decode(resp.content, DECODER[codec], rate)
    assert decoded_rate == rate
    assert len(samples) / rate > 1.0


def test_default_is_mp3_44100(server) -> None:
    resp = tts(server, "maitri")
    assert resp.headers["content-type"] == "audio/mpeg"
    samples, rate = decode(resp.content, "mp3")
    assert rate == 44100 and len(samples) / rate > 1.0


def test_stream_sends_audio_before_synthesis_ends(server) -> None:
    url = server.url + "/v1/text-to-speech/kavya/stream"
    start = time.perf_counter()
    with httpx.stream("POST", url, json={"text": LONG}, params={"output_format": "pcm_16000"},
                      timeout=120) as resp:
        assert resp.status_code == 200
        assert "content-length" not in resp.headers  # chunked: sent as it is made
        parts = resp.iter_raw()
        first = next(parts)
        t_first = time.perf_counter() - start
        body = first + b"".join(parts)
    t_total = time.perf_counter() - start
    print(f"first bytes {t_first * 1000:.0f} ms, whole body {t_total * 1000:.0f} ms")
    assert first and t_first < t_total / 2
    whole = tts(server, text=LONG, params={"output_format": "pcm_16000"})
    assert "content-length" in whole.headers
    assert len(body) == pytest.approx(len(whole.content), rel=0.02)


@pytest.mark.parametrize("speed", [0.7, 1.2, 2.0])
def test_voice_settings_speed_changes_duration(server, speed: float) -> None:
    def seconds(settings: dict) -> float:
        resp = tts(server, params={"output_format": "pcm_24000"}, voice_settings=settings)
        assert resp.status_code == 200, resp.text
        return len(resp.content) / 2 / 24000

    plain = seconds({"stability": 0.5, "similarity_boost": 0.75})
    ratio = seconds({"stability": 0.5, "speed": speed, "use_speaker_boost": True}) / plain
    assert ratio == pytest.approx(1 / speed, rel=0.2)


def test_extra_fields_are_accepted(server) -> None:
    resp = tts(server, model_id="eleven_multilingual_v2", previous_text="Before.",
               next_text="After.", seed=7, apply_text_normalization="off",
               pronunciation_dictionary_locators=[], some_future_field=1,
               params={"output_format": "pcm_22050", "optimize_streaming_latency": 3})
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-sample-rate"] == "22050"


def test_bad_requests_get_our_error_shape(server) -> None:
    bad = tts(server, params={"output_format": "mp3_44100_999"})
    assert error(bad) == (400, "unsupported_output_format", "output_format")
    assert set(bad.json()["error"]["valid"]) == set(OUTPUT_FORMATS)
    unknown = tts(server, "rachel", stream=True)
    assert error(unknown) == (400, "unknown_speaker", "voice_id")
    assert "kavya" in unknown.json()["error"]["valid"]
    assert error(tts(server, voice_settings={"speed": 9.0})) == (
        400, "invalid_speed", "voice_settings.speed")
    assert error(tts(server, language_code="xx")) == (400, "unsupported_language", "language_code")
    assert tts(server, language_code="en").status_code == 200
    assert error(tts(server, apply_text_normalization="always"))[1] == "invalid_text_normalization"
    missing = httpx.post(server.url + "/v1/text-to-speech/kavya", json={"txt": "Hi"}, timeout=30)
    assert error(missing)[:2] == (400, "invalid_request")


def _create_key(data_dir: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "veena.platform.cli", "keys", "create",
                          "--owner", "acme"], env={**os.environ, "VEENA_DATA_DIR": str(data_dir)},
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip().splitlines()[0]


def test_xi_api_key_is_checked_like_any_key(start_server, tmp_path: Path) -> None:
    data = tmp_path / "keys"
    secret = _create_key(data)
    srv = start_server(env={"VEENA_DATA_DIR": str(data)})
    assert error(tts(srv, stream=True))[:2] == (401, "missing_api_key")
    assert error(tts(srv, headers={"xi-api-key": "vk_" + "z" * 43}))[:2] == (
        401, "invalid_api_key")
    ok = tts(srv, stream=True, headers={"xi-api-key": secret},
             params={"output_format": "pcm_16000"})
    assert ok.status_code == 200 and len(ok.content) > 16000
    assert tts(srv, headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    timed = "kavya/with-timestamps"
    assert error(tts(srv, timed))[:2] == (401, "missing_api_key")
    assert tts(srv, timed, headers={"xi-api-key": secret}).json()["alignment"]["characters"]


# --- /with-timestamps ----------------------------------------------------------------------------

TWO = "Hello there, friend. This is the second sentence, quite a bit longer. And 3 more!"


def _check_alignment(align: dict, text: str, seconds: float) -> None:
    starts, ends = align["character_start_times_seconds"], align["character_end_times_seconds"]
    assert "".join(align["characters"]) == text
    assert len(starts) == len(ends) == len(text)
    assert all(s <= e for s, e in zip(starts, ends))
    assert starts == sorted(starts) and ends == sorted(ends)
    assert starts[0] == 0.0 and ends[-1] == pytest.approx(seconds, abs=0.01)


def test_with_timestamps_aligns_every_character(server) -> None:
    resp = tts(server, "kavya/with-timestamps", text=TWO, params={"output_format": "pcm_16000"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    audio = base64.b64decode(body["audio_base64"])
    seconds = len(audio) / 2 / 16000
    _check_alignment(body["alignment"], TWO, seconds)
    normalized = "".join(body["normalized_alignment"]["characters"])
    assert "three" in normalized and "3" not in normalized
    _check_alignment(body["normalized_alignment"], normalized, seconds)
    # The second sentence starts where the first one, spoken alone, ends.
    first = tts(server, text="Hello there, friend.", params={"output_format": "pcm_16000"})
    at = normalized.index("This")
    start = body["normalized_alignment"]["character_start_times_seconds"][at]
    assert start == pytest.approx(len(first.content) / 2 / 16000, abs=0.05)


def test_stream_with_timestamps_sends_json_lines_as_audio_is_made(server) -> None:
    url = server.url + "/v1/text-to-speech/kavya/stream/with-timestamps"
    with httpx.stream("POST", url, json={"text": TWO}, params={"output_format": "mp3_22050_32"},
                      timeout=60) as resp:
        assert resp.status_code == 200 and "content-length" not in resp.headers
        pieces = [json.loads(line) for line in resp.iter_lines() if line]
    assert len(pieces) > 2
    audio = b"".join(base64.b64decode(p["audio_base64"]) for p in pieces)
    samples, rate = decode(audio, "mp3")
    assert rate == 22050
    aligned = [p["alignment"] for p in pieces if p["alignment"]]
    assert len(aligned) >= 2  # one piece per completed chunk, not all at the end
    merged = {k: [v for a in aligned for v in a[k]] for k in aligned[0]}
    # mp3 pads the start and end with a frame or so
    _check_alignment(merged, TWO, merged["character_end_times_seconds"][-1])
    assert merged["character_end_times_seconds"][-1] == pytest.approx(len(samples) / rate, abs=0.1)


def test_with_timestamps_errors_and_keys(server) -> None:
    bad = tts(server, "kavya/with-timestamps", params={"output_format": "wav"})
    assert error(bad) == (400, "unsupported_output_format", "output_format")
    assert error(tts(server, "nobody/stream/with-timestamps"))[:2] == (400, "unknown_speaker")


# --- the official ``elevenlabs`` SDK ------------------------------------------------------------

def test_official_sdk_speaks_through_every_route(server) -> None:
    from elevenlabs import ElevenLabs, VoiceSettings
    from elevenlabs.core.api_error import ApiError

    client = ElevenLabs(api_key="unused", base_url=server.url)
    audio = b"".join(client.text_to_speech.convert(
        voice_id="kavya", text=TEXT, model_id="eleven_multilingual_v2", output_format="pcm_16000",
        voice_settings=VoiceSettings(stability=0.5, similarity_boost=0.7, speed=1.0)))
    assert len(audio) / 2 / 16000 > 1.0
    parts = list(client.text_to_speech.stream(voice_id="kavya", text=LONG,
                                              output_format="mp3_22050_32"))
    samples, rate = decode(b"".join(parts), "mp3")
    assert len(parts) > 1 and rate == 22050 and len(samples) / rate > 10
    timed = client.text_to_speech.convert_with_timestamps(voice_id="kavya", text=TWO,
                                                          output_format="pcm_16000")
    assert "".join(timed.alignment.characters) == TWO
    assert timed.alignment.character_end_times_seconds[-1] == pytest.approx(
        len(base64.b64decode(timed.audio_base_64)) / 2 / 16000, abs=0.01)
    pieces = list(client.text_to_speech.stream_with_timestamps(voice_id="kavya", text=TWO,
                                                               output_format="pcm_16000"))
    assert "".join(c for p in pieces if p.alignment for c in p.alignment.characters) == TWO
    with pytest.raises(ApiError) as caught:
        b"".join(client.text_to_speech.convert(voice_id="rachel", text="Hi."))
    assert caught.value.status_code == 400
    assert caught.value.body["error"]["code"] == "unknown_speaker"
