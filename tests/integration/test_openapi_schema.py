"""``/schema`` tells the truth: schemathesis generates requests from it against a real server
and checks every answer (no 5xx, a documented status and content type, a body matching the
documented schema, SSE events included). Bounded: 20 examples per operation and mode."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)

from veena.platform.openapi import ErrorBody

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
MAX_TEXT = 80
"""Small synthesis requests: the schema's ``maxLength`` follows ``server.max_text_chars``."""
SYNTHESIS = ("POST /v1/tts/generate", "POST /v1/audio/speech")


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory):
    from tests.conftest import Server

    srv = Server(f"[server]\nmax_text_chars = {MAX_TEXT}\n", tmp_path_factory.mktemp("openapi"))
    yield srv.url
    srv.stop()


def test_schema_documents_real_bodies(url: str) -> None:
    doc = httpx.get(url + "/schema/openapi.json", timeout=10).json()
    gen = doc["paths"]["/v1/tts/generate"]["post"]["responses"]
    assert {"audio/wav", "audio/mpeg", "audio/flac"} <= set(gen["200"]["content"])
    # JSON and SSE only for `timestamps: true`: the audio with its words
    assert "words" in gen["200"]["content"]["application/json"]["schema"]["properties"]
    assert "text/event-stream" in gen["200"]["content"]
    speech = doc["paths"]["/v1/audio/speech"]["post"]["responses"]
    assert "text/event-stream" in speech["200"]["content"]
    for status in ("400", "401", "402", "413", "429", "431", "503"):
        assert gen[status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"}, status
    props = doc["components"]["schemas"]["GenerateRequest"]["properties"]
    formats = httpx.get(url + "/v1/formats", timeout=10).json()
    assert {f["name"] for f in formats} <= set(props["format"]["anyOf"][0]["enum"])
    assert props["text"]["maxLength"] == MAX_TEXT
    assert "/metrics" not in doc["paths"]


def test_schemathesis_finds_no_violation(url: str) -> None:
    schema = schemathesis.openapi.from_url(url + "/schema/openapi.json")
    statuses: Counter[tuple[str, GenerationMode, int]] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= set(SYNTHESIS)
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=20, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                response = case.call_and_validate(base_url=url, checks=CHECKS, timeout=30)
                statuses[op.label, mode, response.status_code] += 1

            try:
                run()
            except Unsatisfiable:
                # No invalid request exists for an operation without inputs.
                assert mode is GenerationMode.NEGATIVE, op.label
    # Most requests generated as valid are served: the enums and bounds make them so (the
    # rest combine a rate or bitrate the chosen format does not take).
    for label in SYNTHESIS:
        assert statuses[label, GenerationMode.POSITIVE, 200] >= 5, (label, statuses)


def test_guard_errors_have_the_documented_body(url: str) -> None:
    """413 and 431 come from the request guard, before Litestar: same documented body."""
    big_body = httpx.post(url + "/v1/tts/generate", content=b"{" + b" " * 2_000_000 + b"}",
                          headers={"content-type": "application/json"}, timeout=30)
    big_headers = httpx.get(url + "/v1/formats", headers={"x-pad": "a" * 70_000}, timeout=30)
    for response, status in ((big_body, 413), (big_headers, 431)):
        assert response.status_code == status
        body = msgspec.json.decode(response.content, type=ErrorBody)
        assert body.error.request_id and body.error.type == "invalid_request_error"


def test_schemathesis_cli_coverage_and_stateful_phases(url: str, tmp_path: Path) -> None:
    """The CLI's other phases: boundary values of every constraint (coverage) and request
    sequences (stateful), with the same checks plus undeclared methods (405 with ``Allow``);
    exit status 0 means no violation."""
    checks = [check.__name__ for check in CHECKS] + ["unsupported_method"]
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", url + "/schema/openapi.json",
           "--checks", ",".join(checks), "--phases",
           "coverage,stateful", "--max-examples", "20", "--request-timeout", "30",
           "--no-color"]
    if os.environ.get("CI"):
        cmd.append("--generation-deterministic")
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    tested = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert tested and int(tested[1]) == int(tested[2]) > 0, run.stdout[-3000:]


CORE = {*SYNTHESIS, "GET /v1/models", "GET /v1/formats", "GET /v1/tts/health",
        "POST /v1/text-to-speech/{voice_id}", "POST /v1/text-to-speech/{voice_id}/stream",
        "GET /v1/voices", "GET /v1/voices/{voice_id}", "DELETE /v1/voices/{voice_id}",
        "PATCH /v1/voices/{voice_id}", "POST /v1/voices"}


def test_keyed_server_answers_documented_401_and_402(tmp_path: Path) -> None:
    """With keys: requests without one get 401, a key out of credits 402, both documented
    with the error body (core routes; plugins declare theirs with ``error_responses``)."""
    from tests.conftest import Server

    data, cfg = tmp_path / "data", tmp_path / "veena.toml"
    cfg.write_text(f"[server]\nmax_text_chars = {MAX_TEXT}\n")
    created = subprocess.run(
        [sys.executable, "-m", "veena.platform.cli", "keys", "create", "--owner", "schema",
         "--credits", "20", "--config", str(cfg)], capture_output=True, text=True, check=True,
        env={**os.environ, "VEENA_DATA_DIR": str(data)}, timeout=60)
    key = created.stdout.split()[0]
    srv = Server(cfg.read_text(), tmp_path, env={"VEENA_DATA_DIR": str(data)})
    try:
        schema = schemathesis.openapi.from_url(srv.url + "/schema/openapi.json")
        statuses: Counter[int] = Counter()
        for op in (r.ok() for r in schema.get_all_operations()):
            if op.label not in CORE:
                continue
            for headers in ({}, {"Authorization": f"Bearer {key}"}):
                @settings(max_examples=15, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))
                @given(case=op.as_strategy())
                def run(case: schemathesis.Case) -> None:
                    response = case.call_and_validate(base_url=srv.url, checks=CHECKS,
                                                      headers=headers, timeout=30)
                    statuses[response.status_code] += 1

                run()
        assert statuses[401] and statuses[402] and statuses[200], statuses
    finally:
        srv.stop()
