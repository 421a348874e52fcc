"""Normalization and chunking through a real server: a third-party normalizer installed from a
wheel, placed by config, and the stored record carrying both the original and the normalized
text."""

from __future__ import annotations

import os
import sqlite3

import httpx
import pytest

from tests.support.thirdparty import build_site


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return build_site(tmp_path_factory.mktemp("thirdparty"))


def test_server_uses_the_configured_order_and_stores_both_texts(site, tmp_path, start_server):
    db = tmp_path / "veena.db"
    srv = start_server(f'''
[stages]
normalizers = ["unicode", "percent", "text"]

[plugins.storage]
backend = "sqlite"
sqlite_path = "{db}"
spool_dir = "{tmp_path / 'spool'}"
flush_seconds = 0.01

[plugins.auth]
sqlite_path = "{db}"
spool_dir = "{tmp_path / 'spool'}"

[plugins.chunk]
min_chars = 0
short_chars = 0
''', env={"PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)})
    text = "Sale: 50% off! <laugh> बिक्री में ₹2,50,000 बचे।"
    resp = httpx.post(srv.url + "/v1/tts/generate",
                      json={"text": text, "format": "wav", "stream": False}, timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.content[:4] == b"RIFF" and len(resp.content) > 1000
    srv.stop()  # flushes the storage queue
    with sqlite3.connect(db) as conn:
        original, normalized, chunks = conn.execute(
            "SELECT original_text, normalized_text, chunks FROM veena_sentences").fetchone()
    assert original == text
    assert normalized == "Sale: fifty per cent off! <laugh> बिक्री में दो लाख पचास हज़ार रुपये बचे।"
    assert chunks == 2


def test_third_party_codec_serves_http(site, start_server):
    srv = start_server(None, env={"PYTHONPATH": os.pathsep.join(
        p for p in (str(site), os.environ.get("PYTHONPATH")) if p)})
    formats = {f["name"] for f in httpx.get(srv.url + "/v1/formats").json()}
    assert {"s8", "wav"} <= formats
    resp = httpx.post(srv.url + "/v1/tts/generate",
                      json={"text": "Hello from a plugin codec.", "format": "pcm_s8",
                            "stream": False}, timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "audio/x-s8"
    rate = int(resp.headers["x-sample-rate"])
    duration = float(resp.headers["x-audio-duration-s"])
    assert rate == 22050 and abs(len(resp.content) / rate - duration) < 0.01
    assert max(abs(b - 256 if b > 127 else b) for b in resp.content) > 10  # not silence
