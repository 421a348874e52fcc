"""``WS /v1/tts/ws`` with the neural voice (Veena3 on a tiny random checkpoint in the real
on-disk format, on the CPU): segments stream as one valid stream per context, and cancel
returns the engine to zero active work."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from tests.conftest import Server
from tests.support.decode import decode
from tests.support.spark_checkpoint import tiny_checkpoint

pytest.importorskip("torch")


class SparkServer(Server):
    def _wait(self, timeout: float = 180.0) -> None:  # torch import and model load
        super()._wait(timeout)


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    ckpt = tiny_checkpoint(tmp_path_factory)
    config = f"""
[stages]
synthesizer = "spark"

[plugins.spark]
model_path = "{ckpt}"
threads = 1
"""
    srv = SparkServer(config, tmp_path_factory.mktemp("spark-ws"))
    yield srv
    srv.stop()


async def _session(srv, fmt: str, text: str, cancel_after: int | None = None) -> tuple[dict, bytes, dict]:
    url = srv.url.replace("http://", "ws://") + "/v1/tts/ws"
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "format": fmt, "seed": 7, "max_tokens": 200}))
        ready = json.loads(await ws.recv())
        for i in range(0, len(text), 5):
            await ws.send(json.dumps({"type": "text", "text": text[i:i + 5]}))
        if cancel_after is None:
            await ws.send(json.dumps({"type": "end"}))
        audio, done, frames = bytearray(), {}, 0
        async for msg in ws:
            if isinstance(msg, bytes):
                audio += msg
                frames += 1
                if cancel_after is not None and frames == cancel_after:
                    await ws.send(json.dumps({"type": "cancel"}))
                    await ws.send(json.dumps({"type": "end"}))
                continue
            ev = json.loads(msg)
            if ev["type"] == "done":
                done = ev
            assert ev["type"] != "error", ev
        return ready, bytes(audio), done


@pytest.mark.parametrize("fmt", ["pcm", "opus"])
def test_segments_of_the_neural_voice_make_one_stream(spark, fmt):
    ready, audio, done = asyncio.run(_session(spark, fmt, "Hello there. How are you today?"))
    assert done["outcome"] == "completed" and len(done["request_ids"]) == 2
    samples, rate = decode(audio, fmt, ready["sample_rate"])
    assert abs(len(samples) / rate - done["audio_seconds"]) < 0.15
    assert done["audio_seconds"] > 0


def test_cancel_frees_the_neural_engine(spark):
    ready, audio, done = asyncio.run(_session(
        spark, "pcm", "One sentence here. " * 20, cancel_after=1))
    assert done["outcome"] == "cancelled"
    deadline = time.monotonic() + 30
    while spark.health()["active_streams"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert spark.health()["active_streams"] == 0
