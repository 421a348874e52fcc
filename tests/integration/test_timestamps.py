"""Word timestamps on a real ``veena serve`` (embedded eSpeak NG voice): exact times from
eSpeak NG's word events, over ``WS /v1/tts/ws`` and ``POST /v1/tts/generate``
(``timestamps: true``, SSE and whole JSON), with offsets into the text the client sent."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time

import httpx
import pytest
import websockets

from tests.integration.test_websocket import Got, receive_all, send, ws_url
from tests.support.decode import decode

RUPEES = "I need ₹2,50,000 by Monday, please."
MIXED = "मुझे ₹2,50,000 चाहिए, please call me at 5 pm today."
PAIRS = "He said that the first train leaves at 7:30 am, and so that the second one waits."
"""eSpeak NG reads "that the" as one word (one word event): one item covering both."""
SPOKEN = re.compile(r"\S+")


def check_words(text: str, words: list[dict], audio_seconds: float, *, exact: bool) -> None:
    """Monotonic, inside the audio, and every whitespace-separated item of ``text`` covered
    once, in order, by offsets into ``text`` itself (an item the normalizer read as one, such
    as "5 pm", may be one word)."""
    assert words
    tokens = [m.span() for m in SPOKEN.finditer(text)]
    starts, ends = [a for a, _ in tokens], [b for _, b in tokens]
    covered = []
    for w in words:
        assert w["text_start"] in starts and w["text_end"] in ends, (w, text)
        covered += [t for t in tokens if w["text_start"] <= t[0] and t[1] <= w["text_end"]]
    assert covered == tokens, [text[w["text_start"]:w["text_end"]] for w in words]
    for prev, w in zip([None, *words], words):
        assert 0 <= w["start"] <= w["end"] <= audio_seconds + 1e-3, w
        assert w["estimated"] is (not exact)
        if prev is not None:
            assert w["start"] >= prev["end"] - 1e-3 and w["text_start"] >= prev["text_end"]


# --- the WebSocket ---------------------------------------------------------------------------

def ws_speak(srv, text: str, **start) -> Got:
    async def main() -> Got:
        async with websockets.connect(ws_url(srv), max_size=None) as ws:
            await send(ws, type="start", timestamps=True, format="pcm", **start)
            for i in range(0, len(text), 5):
                await send(ws, type="text", text=text[i:i + 5])
            await send(ws, type="end")
            return await receive_all(ws, Got())
    return asyncio.run(main())


@pytest.mark.parametrize("text", [RUPEES, MIXED, PAIRS], ids=["rupees", "hindi-english", "pairs"])
def test_websocket_words_are_exact_and_point_into_the_original_text(server, text):
    got = ws_speak(server, text)
    (done,) = got.of("done")
    words = [w for a in got.of("alignment") for w in a["words"]]
    check_words(text, words, done["audio_seconds"], exact=True)
    if "₹" not in text:
        return
    rupees = next(w for w in words if text[w["text_start"]:w["text_end"]] == "₹2,50,000")
    # "two lakh fifty thousand rupees" (or Hindi) takes well over a second: one item, its time
    assert rupees["end"] - rupees["start"] > 0.8
    samples, rate = decode(bytes(got.audio["default"]), "pcm", 22050)
    assert len(samples) / rate == pytest.approx(done["audio_seconds"], abs=1e-3)


def test_websocket_exact_word_starts_are_where_the_sound_is(server):
    """Between two words eSpeak NG pauses at a comma; each word's span holds sound."""
    text = "Hello world, this is a test."
    got = ws_speak(server, text)
    samples, rate = decode(bytes(got.audio["default"]), "pcm", 22050)
    words = [w for a in got.of("alignment") for w in a["words"]]
    check_words(text, words, len(samples) / rate, exact=True)
    for w in words:
        part = samples[int(w["start"] * rate):int(w["end"] * rate)]
        assert len(part) and float(abs(part).max()) > 0.02, w
    # the comma's pause lies between "world," and "this": silence there, not inside a word
    gap = samples[int(words[1]["end"] * rate) + 50:int(words[2]["start"] * rate) - 50]
    assert len(gap) > rate * 0.05 and float(abs(gap).max()) < 0.02


def test_websocket_words_without_normalization(server):
    """eSpeak NG reads "₹2,50,000" itself as several words: still one item."""
    got = ws_speak(server, RUPEES, normalize=False)
    (done,) = got.of("done")
    words = [w for a in got.of("alignment") for w in a["words"]]
    check_words(RUPEES, words, done["audio_seconds"], exact=True)


def test_websocket_words_with_speed(server):
    slow = ws_speak(server, RUPEES, speed=0.5)
    fast = ws_speak(server, RUPEES)
    for got in (slow, fast):
        words = [w for a in got.of("alignment") for w in a["words"]]
        check_words(RUPEES, words, got.of("done")[0]["audio_seconds"], exact=True)
    assert slow.of("done")[0]["audio_seconds"] > 1.5 * fast.of("done")[0]["audio_seconds"]


# --- HTTP ----------------------------------------------------------------------------------

def sse_events(body: bytes) -> list[tuple[str, dict]]:
    out = []
    for block in body.decode().split("\n\n"):
        if block.strip():
            kind = re.search(r"^event: (\S+)$", block, re.M).group(1)
            data = json.loads(re.search(r"^data: (.*)$", block, re.M).group(1))
            assert data["type"] == kind
            out.append((kind, data))
    return out


@pytest.mark.parametrize("text", [RUPEES, MIXED], ids=["rupees", "hindi-english"])
@pytest.mark.parametrize("fmt", ["pcm", "mp3"])
def test_http_sse_streams_audio_and_alignment_events(server, text, fmt):
    long = " ".join([text] * 60)  # minutes of speech: synthesis takes a while even here
    times, parts = [], []
    t0 = time.perf_counter()
    with httpx.stream("POST", server.url + "/v1/tts/generate", timeout=60,
                      json={"text": long, "format": fmt, "timestamps": True,
                            "stream": True}) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        for piece in resp.iter_raw():
            times.append(time.perf_counter() - t0)
            parts.append(piece)
    events = sse_events(b"".join(parts))
    kinds = [k for k, _ in events]
    assert kinds[0] == "audio" and kinds[-1] == "done" and "alignment" in kinds
    # true streaming: the first event left long before the last
    assert len(parts) > 10 and times[0] < 0.3 * times[-1], (times[0], times[-1])
    # alignment events come while audio still flows, not all at the end
    assert kinds.index("alignment") < len(kinds) - 3
    done = events[-1][1]
    audio = b"".join(base64.b64decode(d["audio"]) for k, d in events if k == "audio")
    assert len(audio) == done["bytes"]
    samples, rate = decode(audio, fmt, done["sample_rate"])
    seconds = len(samples) / rate
    assert seconds == pytest.approx(done["audio_seconds"], abs=0.1)
    pieces = [d for k, d in events if k == "alignment"]
    assert [p["audio_start"] for p in pieces] == sorted(p["audio_start"] for p in pieces)
    words = [w for p in pieces for w in p["words"]]
    check_words(long, words, done["audio_seconds"], exact=True)
    assert done["word_count"] == len(words)


def test_http_whole_json_has_audio_and_words(server):
    resp = httpx.post(server.url + "/v1/tts/generate", timeout=60,
                      json={"text": MIXED, "format": "wav", "timestamps": True, "stream": False})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    body = resp.json()
    samples, rate = decode(base64.b64decode(body["audio"]), "wav", body["sample_rate"])
    assert len(samples) / rate == pytest.approx(body["audio_seconds"], abs=0.01)
    check_words(MIXED, body["words"], body["audio_seconds"], exact=True)
    assert body["words"] == [w for p in body["alignment"] for w in p["words"]]
    assert resp.headers["X-Audio-Duration-s"]


def test_http_timestamps_errors_are_clean_json(server):
    resp = httpx.post(server.url + "/v1/tts/generate", timeout=30,
                      json={"text": "hi", "timestamps": True, "speaker": "nobody"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "unknown_speaker"
    resp = httpx.post(server.url + "/v1/tts/generate", timeout=30,
                      json={"text": "hi", "timestamps": "yes"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "timestamps"
