"""A GPU fault through a real HTTP server: a test voice raises torch.cuda.OutOfMemoryError mid
stream. That stream ends, a stream in flight finishes, the server drains (health 503
`draining`, new requests a JSON 503 with Retry-After), `veena_drain` runs once, and the fault
is logged and counted. Errors that are not GPU faults change nothing."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time

import httpx
import numpy as np
import pytest
from litestar.testing import TestClient

from tests.support.decode import decode
from tests.support.inprocess import ThreadServer
from veena.platform.app import create_app
from veena.platform.audio import PCM
from veena.platform.config import parse_config
from veena.platform.hookspecs import hookimpl

torch = pytest.importorskip("torch")
RATE = 16000
BLOCK = RATE // 50  # 20 ms


class FaultyVoice:
    """Text with FAULT: a few blocks, then CUDA out of memory; EARLY: that before any audio;
    BROKEN: an ordinary error; anything else: 40 slow blocks (0.8 s of audio)."""

    name = "faulty"
    sample_rate = RATE

    async def stream(self, job):
        text = job.text
        job.mark_chunk_started(0)
        if "EARLY" in text:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if "BROKEN" in text:
            raise RuntimeError("voice broke")
        for i in range(40):
            if "FAULT" in text and i == 5:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            await asyncio.sleep(0.03)
            yield PCM(np.full(BLOCK, 1000, dtype=np.int16), RATE)


class Plugin:
    def __init__(self) -> None:
        self.drains: list[str] = []
        self.records = []

    @hookimpl
    def veena_register_synthesizers(self, runtime):
        return [FaultyVoice()]

    @hookimpl
    def veena_drain(self, reason, runtime):
        self.drains.append(reason)

    @hookimpl
    def veena_request_finished(self, record, runtime):
        self.records.append(record)


def _app(tmp_path, monkeypatch, plugin):
    monkeypatch.setenv("VEENA_DATA_DIR", str(tmp_path))
    config = parse_config({"stages": {"synthesizer": "faulty"},
                           "plugins": {"chunk": {"min_chars": 0, "short_chars": 0}}})
    return create_app(config, plugins=[("faulty", plugin)])


def _read(url, text, out, started=None):
    chunks = []
    try:
        with httpx.stream("POST", url + "/v1/tts/generate", json={"text": text, "format": "wav"},
                          timeout=30) as resp:
            out["status"] = resp.status_code
            for chunk in resp.iter_raw():
                chunks.append(chunk)
                if started is not None:
                    started.set()
    except httpx.HTTPError as exc:
        out["error"] = exc
    out["body"] = b"".join(chunks)


class Events(logging.Handler):
    """The ``veena.events`` records of a test (Litestar's start-up replaces the root logger's
    handlers, caplog's among them, so this one sits on the events logger itself)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self.logger = logging.getLogger("veena.events")

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Events:
        self.level_before = self.logger.level
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level_before)

    def named(self, name: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.getMessage() == name]


def _wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert predicate()


def test_fault_mid_stream_drains_the_server(tmp_path, monkeypatch):
    plugin = Plugin()
    with Events() as events:
        srv = ThreadServer(_app(tmp_path, monkeypatch, plugin))
        _drain_mid_stream(srv, plugin)
    faults = events.named("tts.gpu_fault")
    assert len(faults) == 1 and faults[0].kind == "cuda_oom"
    assert faults[0].error == "OutOfMemoryError"
    draining = events.named("tts.draining")
    assert len(draining) == 1 and draining[0].drain_hooks == ["faulty"]


def _drain_mid_stream(srv: ThreadServer, plugin: Plugin) -> None:
    try:
        healthy, started = {}, threading.Event()
        reader = threading.Thread(target=_read, args=(srv.url, "A healthy stream.", healthy, started))
        reader.start()
        assert started.wait(10), "the healthy stream sent nothing"

        faulty: dict = {}
        _read(srv.url, "This one will FAULT.", faulty)
        assert faulty["status"] == 200
        assert len(faulty["body"]) > 44, "the faulty stream sent no audio before the fault"
        assert isinstance(faulty.get("error"), httpx.RemoteProtocolError)  # cut, not completed

        health = httpx.get(srv.url + "/v1/tts/health", timeout=5)
        assert health.status_code == 503 and health.json()["status"] == "draining"
        refused = httpx.post(srv.url + "/v1/tts/generate", json={"text": "New work."}, timeout=5)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "draining"

        reader.join(30)
        assert healthy["status"] == 200 and "error" not in healthy
        samples, rate = decode(healthy["body"], "wav")
        assert rate == RATE and len(samples) == 40 * BLOCK  # the stream in flight finished

        _wait(lambda: plugin.drains and len(plugin.records) == 2)
        assert plugin.drains == ["cuda_oom"]
        outcomes = sorted((r.outcome, r.error_code) for r in plugin.records)
        assert outcomes == [("completed", None), ("failed", "gpu_fault")]
        metrics = httpx.get(srv.url + "/metrics", timeout=5).text
        assert re.search(r'^veena_gpu_faults_total\{kind="cuda_oom"[^}]*\} 1\.0$', metrics, re.M)
        assert re.search(r"^veena_ready(\{[^}]*\})? 0\.0$", metrics, re.M)
    finally:
        srv.stop()


def test_fault_before_the_first_byte_is_a_json_503(tmp_path, monkeypatch):
    plugin = Plugin()
    app = _app(tmp_path, monkeypatch, plugin)
    with TestClient(app) as client:
        resp = client.post("/v1/tts/generate", json={"text": "EARLY fault."})
        assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
        assert resp.json()["error"]["code"] == "gpu_fault"
        assert client.get("/v1/tts/health").json()["status"] == "draining"
        _wait(lambda: plugin.drains == ["cuda_oom"])


def test_other_errors_do_not_drain(tmp_path, monkeypatch):
    plugin = Plugin()
    app = _app(tmp_path, monkeypatch, plugin)
    with TestClient(app) as client:
        resp = client.post("/v1/tts/generate", json={"text": "BROKEN voice."})
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error"
        assert client.get("/v1/tts/health").json()["status"] == "ok"
        assert client.post("/v1/tts/generate", json={"text": "Fine.", "stream": False}).status_code == 200
    assert plugin.drains == []
