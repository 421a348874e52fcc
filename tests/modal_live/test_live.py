"""The deployed service over the internet: cold start until ready, streaming in every format
(chunk by chunk, first bytes before the body ends, audio decoded with PyAV), concurrent
streams, the up-front refusal of text too long for Modal's request limit, and the OpenAI route.
Skipped unless MODAL_ENDPOINT_URL is set (conftest.py)."""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.live import Endpoint, stream
from tests.support.decode import decode

FORMATS = ["wav", "pcm", "mulaw", "alaw", "opus", "mp3", "flac", "aac"]
TEXT = ("Streaming speech from a GPU on Modal. Each sentence is generated while the one before "
        "it is already playing. The audio arrives in small pieces, long before the end.")


def test_cold_start_until_ready(endpoint: Endpoint, record_property):
    """First in this module: from the first request until health says ok. A container that
    was scaled to zero starts here (image, snapshot restore, engine start, warm-up)."""
    budget = float(os.environ.get("MODAL_LIVE_COLD_START_S", "600"))
    t0 = time.perf_counter()
    seen = []
    with endpoint.client(timeout=budget) as client:
        while True:
            resp = client.get("/v1/tts/health")
            seen.append(resp.status_code)
            if resp.status_code == 200:
                break
            assert resp.status_code == 503, resp.text
            assert resp.json()["status"] in {"starting", "warming"}, resp.text
            assert time.perf_counter() - t0 < budget, f"not ready after {budget:.0f} s"
            time.sleep(1)
    elapsed = time.perf_counter() - t0
    record_property("cold_start_s", round(elapsed, 2))
    print(f"\nready after {elapsed:.2f} s ({len(seen)} health requests)")
    assert resp.json()["status"] == "ok"
    assert set(FORMATS) <= set(resp.json()["formats"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_streams(endpoint: Endpoint, fmt: str):
    with endpoint.client() as client:
        got = stream(client, {"text": TEXT, "format": fmt})
    assert got.status == 200, got.body[:500]
    assert got.headers["x-accel-buffering"] == "no"
    assert len(got.times) > 1, "the body came in one piece: not streamed"
    assert got.first < got.last, "the first bytes did not arrive before the body ended"
    rate = int(got.headers["x-sample-rate"])
    samples, decoded_rate = decode(got.body, fmt, rate)
    assert decoded_rate == rate
    assert len(samples) / rate > 3.0
    print(f"\n{fmt}: first bytes {got.first * 1000:.0f} ms, body {got.last:.2f} s, "
          f"{len(got.times)} pieces, {len(samples) / rate:.1f} s of audio")


def test_concurrent_streams(endpoint: Endpoint, record_property):
    n = int(os.environ.get("MODAL_LIVE_STREAMS", "8"))

    def one(i: int):
        with endpoint.client() as client:
            return stream(client, {"text": TEXT, "format": "wav", "seed": i})

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    assert [r.status for r in results] == [200] * n
    for r in results:
        samples, rate = decode(r.body, "wav")
        assert len(samples) / rate > 3.0
    firsts = sorted(r.first for r in results)
    record_property("ttfb_p50_ms", round(statistics.median(firsts) * 1000))
    print(f"\n{n} streams: first bytes p50 {statistics.median(firsts) * 1000:.0f} ms, "
          f"max {firsts[-1] * 1000:.0f} ms; bodies done in {max(r.last for r in results):.2f} s")


def test_text_too_long_for_the_request_limit_is_refused_at_once(endpoint: Endpoint):
    text = "This sentence is repeated to make a text far too long for one request. " * 700
    t0 = time.perf_counter()
    with endpoint.client() as client:
        resp = client.post("/v1/tts/generate", json={"text": text})
    assert resp.status_code == 413, resp.text[:500]
    assert resp.json()["error"]["code"] == "audio_too_long"
    assert time.perf_counter() - t0 < 30


def test_whole_body_and_openai_route(endpoint: Endpoint):
    with endpoint.client() as client:
        whole = client.post("/v1/tts/generate", json={"text": TEXT, "stream": False})
        assert whole.status_code == 200
        assert float(whole.headers["x-audio-duration-s"]) > 3.0
        openai = client.post("/v1/audio/speech", json={"model": "veena3", "input": TEXT,
                                                       "response_format": "opus"})
        assert openai.status_code == 200
    samples, rate = decode(openai.content, "opus")
    assert len(samples) / rate > 3.0


def test_bad_request_is_a_json_error(endpoint: Endpoint):
    with endpoint.client() as client:
        resp = client.post("/v1/tts/generate", json={"text": "Hello.", "format": "nope"})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "unsupported_format"
    assert resp.headers["x-request-id"]


def test_no_key_is_refused_when_keys_are_required(endpoint: Endpoint):
    if "Authorization" not in endpoint.headers:
        pytest.skip("MODAL_API_KEY is not set: the endpoint is assumed open")
    resp = httpx.post(endpoint.url + "/v1/tts/generate", json={"text": "Hello."}, timeout=150,
                      follow_redirects=True)
    assert resp.status_code == 401
