"""Readiness: health is 503 with the phase until the server takes requests, synthesis is refused
with a JSON 503 meanwhile, and a plain `veena serve` is ready once its start-up is done."""

import re

import httpx
import pytest
from litestar.testing import TestClient

from veena.platform.app import create_app
from veena.platform.config import parse_config
from veena.platform.runtime import Phase


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("VEENA_DATA_DIR", str(tmp_path))
    return create_app(parse_config({}))


def _refused(resp, code: str, retry_after: str):
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == code
    assert resp.headers["retry-after"] == retry_after
    assert resp.headers["x-request-id"]


@pytest.mark.parametrize("phase", [Phase.STARTING, Phase.WARMING])
def test_not_ready_until_started(app, phase):
    app.state.runtime.phase = phase
    client = TestClient(app)  # no lifespan: start-up has not run
    health = client.get("/v1/tts/health")
    assert health.status_code == 503 and health.json()["status"] == phase.value
    assert health.headers["cache-control"] == "no-cache"
    _refused(client.post("/v1/tts/generate", json={"text": "Hello."}), "not_ready", "5")
    _refused(client.post("/v1/audio/speech", json={"input": "Hello."}), "not_ready", "5")
    assert client.get("/v1/voices").status_code == 200  # the catalog is there already
    metrics = client.get("/metrics").text
    assert re.search(r"^veena_ready(\{[^}]*\})? 0\.0$", metrics, re.M)


def test_ready_after_startup_then_draining(app):
    runtime = app.state.runtime
    with TestClient(app) as client:
        assert runtime.started and runtime.phase is Phase.READY
        assert client.get("/v1/tts/health").json()["status"] == "ok"
        assert re.search(r"^veena_ready(\{[^}]*\})? 1\.0$", client.get("/metrics").text, re.M)
        assert client.post("/v1/tts/generate", json={"text": "Hello.", "stream": False}).status_code == 200
        runtime.phase = Phase.DRAINING
        health = client.get("/v1/tts/health")
        assert health.status_code == 503 and health.json()["status"] == "draining"
        _refused(client.post("/v1/tts/generate", json={"text": "Hello."}), "draining", "1")


def test_veena_serve_is_ready_after_its_startup(server):
    resp = httpx.get(server.url + "/v1/tts/health", timeout=5)
    assert resp.status_code == 200 and resp.json()["status"] == "ok"
