"""Spans, metrics and log events of real requests; no log line carries the request text."""

import json
import time

import httpx
from litestar.testing import TestClient
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from veena.platform.app import create_app
from veena.platform.config import parse_config

STAGES = {"auth", "normalize", "chunk", "synthesize", "process", "encode", "store"}


def _traced_request(traces: str) -> InMemorySpanExporter:
    """Spans of one opus request to an app whose traces go to ``traces``."""
    app = create_app(parse_config({"telemetry": {"traces": traces}}))
    exporter = InMemorySpanExporter()
    app.state.runtime.telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    with TestClient(app) as client:
        text = "One sentence here. " * 40  # many audio blocks, still one span a stage
        resp = client.post("/v1/tts/generate", json={"text": text, "format": "opus"})
        assert resp.status_code == 200
        deadline = time.monotonic() + (5 if traces != "none" else 0.5)
        while "store" not in {s.name for s in exporter.get_finished_spans()} and time.monotonic() < deadline:
            time.sleep(0.02)
    return exporter


def test_one_server_span_and_one_child_span_per_stage():
    spans = _traced_request("console").get_finished_spans()
    servers = [s for s in spans if s.kind.name == "SERVER"]
    assert len(servers) == 1 and servers[0].name == "POST /v1/tts/generate"
    server = servers[0]
    children = [s for s in spans if s is not server]
    assert sorted(s.name for s in children) == sorted(STAGES)
    for span in children:
        assert span.context.trace_id == server.context.trace_id
        assert span.parent.span_id == server.context.span_id
    assert server.attributes["http.response.status_code"] == 200
    encode = next(s for s in children if s.name == "encode")
    assert encode.attributes["veena.items"] > 10  # many blocks went through one span


def test_spans_are_not_recorded_when_traces_go_nowhere():
    assert _traced_request("none").get_finished_spans() == ()


def test_metrics_and_log_events_of_a_real_request(start_server):
    srv = start_server()
    secret_text = "Zebra quartz violin 4815162342 sentence for the log check."
    resp = httpx.post(srv.url + "/v1/tts/generate", json={"text": secret_text, "format": "mp3"},
                      headers={"X-Request-ID": "obs-1"}, timeout=30)
    assert resp.status_code == 200
    bad = httpx.post(srv.url + "/v1/tts/generate", json={"text": secret_text, "speaker": "x"})
    assert bad.status_code == 400
    metrics = httpx.get(srv.url + "/metrics").text
    assert 'veena_requests_total{' in metrics
    assert 'format="mp3"' in metrics and 'route="/v1/tts/generate"' in metrics
    assert 'status="200"' in metrics and 'status="400"' in metrics
    assert "veena_ttfb_seconds_bucket" in metrics and "veena_rtf_bucket" in metrics
    assert "veena_audio_seconds_total" in metrics and "veena_encode_seconds_bucket" in metrics
    srv.wait_event("tts.stream_completed", "obs-1")
    srv.wait_event("tts.error")
    lines = [json.loads(line) for line in srv.log.read_text().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("request_id") == "obs-1"]
    events = [line["event"] for line in mine]
    for name in ("tts.request_received", "tts.auth_validated", "tts.normalization_done",
                 "tts.chunking_decision", "tts.inference_started", "tts.first_audio_emitted",
                 "tts.stream_completed"):
        assert name in events, f"{name} missing from {events}"
    assert any(line["event"] == "tts.error" and line.get("code") == "unknown_speaker" for line in lines)
    log_text = srv.log.read_text()
    assert "Zebra" not in log_text and "4815162342" not in log_text
