"""Word timestamps of the neural voice (Veena3 on a tiny random checkpoint, CPU): chunk bounds
measured, words inside a chunk estimated (``"estimated": true``), over WS and HTTP, with
offsets into the text the client sent."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest
import websockets

from tests.integration.test_timestamps import RUPEES, MIXED, check_words, sse_events
from tests.integration.test_websocket import Got, receive_all, send, ws_url
from tests.integration.test_websocket_spark import spark  # noqa: F401 - the server fixture
from tests.support.decode import decode

pytest.importorskip("torch")

LONG = RUPEES + " " + MIXED + " And one more sentence, so that there are several chunks here."


def test_websocket_words_of_the_neural_voice_are_estimated(spark):  # noqa: F811
    async def main() -> Got:
        async with websockets.connect(ws_url(spark), max_size=None) as ws:
            await send(ws, type="start", format="pcm", timestamps=True, seed=3, max_tokens=120)
            for i in range(0, len(MIXED), 6):
                await send(ws, type="text", text=MIXED[i:i + 6])
            await send(ws, type="end")
            return await receive_all(ws, Got(), timeout=120)

    got = asyncio.run(main())
    (done,) = got.of("done")
    assert done["outcome"] == "completed"
    pieces = got.of("alignment")
    assert pieces and pieces[-1]["audio_end"] == pytest.approx(done["audio_seconds"], abs=1e-3)
    check_words(MIXED, [w for p in pieces for w in p["words"]], done["audio_seconds"],
                exact=False)


def test_http_sse_and_json_words_of_the_neural_voice(spark):  # noqa: F811
    body = {"text": LONG, "format": "pcm", "timestamps": True, "seed": 3, "max_tokens": 80}
    with httpx.stream("POST", spark.url + "/v1/tts/generate", timeout=180,
                      json={**body, "stream": True}) as resp:
        assert resp.status_code == 200, resp.read()
        events = sse_events(resp.read())
    done = events[-1][1]
    pieces = [d for k, d in events if k == "alignment"]
    assert len(pieces) >= 2  # several chunks, each with measured bounds, back to back
    for prev, piece in zip(pieces, pieces[1:]):
        assert piece["audio_start"] == pytest.approx(prev["audio_end"], abs=1e-3)
        assert piece["text_start"] >= prev["text_end"]
    audio = b"".join(base64.b64decode(d["audio"]) for k, d in events if k == "audio")
    samples, rate = decode(audio, "pcm", done["sample_rate"])
    assert pieces[-1]["audio_end"] == pytest.approx(len(samples) / rate, abs=1e-3)
    check_words(LONG, [w for p in pieces for w in p["words"]], done["audio_seconds"],
                exact=False)

    whole = httpx.post(spark.url + "/v1/tts/generate", timeout=180,
                       json={**body, "stream": False}).json()
    check_words(LONG, whole["words"], whole["audio_seconds"], exact=False)
