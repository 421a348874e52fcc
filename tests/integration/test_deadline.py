"""The request deadline (Modal's web request limit): text that cannot be spoken in time is
refused up front with a 413; a stream still running at the deadline ends with a complete file."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient

from tests.support.decode import decode
from tests.support.tone import ToneSynthesizer
from veena.platform.app import create_app
from veena.platform.config import parse_config
from veena.platform.hookspecs import hookimpl


class SlowTone:
    """A tone voice that takes real time: 0.25 s of audio a sentence, made in 0.25 s."""

    def __init__(self) -> None:
        self.voice = ToneSynthesizer(seconds_per_chunk=0.25, delay=0.05)
        self.records = []

    @hookimpl
    def veena_register_synthesizers(self, runtime):
        return [self.voice]

    @hookimpl
    def veena_request_finished(self, record, runtime):
        self.records.append(record)


def _client(tmp_path, monkeypatch, plugin=None, **server):
    monkeypatch.setenv("VEENA_DATA_DIR", str(tmp_path))
    table = {"server": server, "plugins": {"chunk": {"min_chars": 0, "short_chars": 0}}}
    if plugin is not None:
        table["stages"] = {"synthesizer": "tone"}
    plugins = [("slowtone", plugin)] if plugin is not None else []
    return TestClient(create_app(parse_config(table), plugins=plugins))


def test_text_too_long_for_the_deadline_is_refused_up_front(tmp_path, monkeypatch):
    # 10 s a request at an expected real-time factor of 1 and 15 characters a second of
    # speech: at most 10 s of audio, about 150 characters.
    with _client(tmp_path, monkeypatch, request_deadline_s=10, deadline_rtf=1.0,
                 speech_chars_per_second=15) as client:
        resp = client.post("/v1/tts/generate", json={"text": "A fairly long sentence here. " * 10})
        assert resp.status_code == 413
        error = resp.json()["error"]
        assert error["code"] == "audio_too_long"
        assert error["max_audio_seconds"] == 10.0 and error["max_chars"] == 150
        assert error["estimated_audio_seconds"] > 10
        ok = client.post("/v1/tts/generate", json={"text": "Short enough.", "stream": False})
        assert ok.status_code == 200


def test_without_a_deadline_long_text_is_accepted(tmp_path, monkeypatch):
    with _client(tmp_path, monkeypatch) as client:
        resp = client.post("/v1/tts/generate", json={"text": "A fairly long sentence here. " * 10,
                                                     "format": "pcm", "stream": False})
        assert resp.status_code == 200


@pytest.mark.parametrize("fmt", ["opus", "wav", "mp3"])
def test_stream_at_the_deadline_ends_with_a_complete_file(tmp_path, monkeypatch, fmt):
    plugin = SlowTone()
    text = " ".join(f"Sentence number {i}." for i in range(40))  # 10 s of audio, 10 s to make
    with _client(tmp_path, monkeypatch, plugin, request_deadline_s=0.6,
                 deadline_rtf=0.001) as client:
        resp = client.post("/v1/tts/generate", json={"text": text, "format": fmt})
        assert resp.status_code == 200
        samples, rate = decode(resp.content, fmt, int(resp.headers["x-sample-rate"]))
    seconds = len(samples) / rate
    assert 0.3 < seconds < 2.5, seconds  # stopped near the deadline, and decodes to the end
    (record,) = plugin.records
    assert record.outcome == "failed" and record.error_code == "deadline_exceeded"
    assert record.chars_delivered < record.chars_requested


def test_whole_body_past_the_deadline_is_a_504(tmp_path, monkeypatch):
    plugin = SlowTone()
    text = " ".join(f"Sentence number {i}." for i in range(40))
    with _client(tmp_path, monkeypatch, plugin, request_deadline_s=0.6,
                 deadline_rtf=0.001) as client:
        resp = client.post("/v1/tts/generate", json={"text": text, "stream": False})
    assert resp.status_code == 504 and resp.json()["error"]["code"] == "deadline_exceeded"
