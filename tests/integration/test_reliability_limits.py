"""Issue 14.2/14.3 against a real `veena serve`: bodies nested too deeply, too large, headers
too large, and clients that close before their body is read."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

ROUTES = {"/v1/tts/generate": "text", "/v1/audio/speech": "input"}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A server with authentication on (a key exists in its SQLite store) and its key."""
    from tests.conftest import Server

    tmp = tmp_path_factory.mktemp("keyed")
    data = tmp / "data"
    env = {**os.environ, "VEENA_DATA_DIR": str(data)}
    secret = subprocess.run([sys.executable, "-m", "veena.platform.cli", "keys", "create",
                             "--owner", "probe"], env=env, capture_output=True, text=True,
                            check=True, timeout=60).stdout.strip()
    srv = Server(tmp=tmp, env={"VEENA_DATA_DIR": str(data)})
    yield srv, secret
    srv.stop()


def error(resp: httpx.Response) -> dict:
    return resp.json()["error"]


def deep(field: str, levels: int = 2000) -> bytes:
    return b'{"%s":' % field.encode() + b"[" * levels + b"]" * levels + b"}"


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("with_key", [False, True])
def test_deep_json_is_a_400_with_a_stable_code(keyed, route, with_key):
    srv, secret = keyed
    headers = {"content-type": "application/json"}
    if with_key:
        headers["authorization"] = f"Bearer {secret}"
    for body in (deep(ROUTES[route]), b"[" * 5000, b'{"a":' * 3000):
        resp = httpx.post(srv.url + route, content=body, headers=headers, timeout=30)
        assert resp.status_code == 400, resp.text
        assert error(resp)["code"] in ("json_too_deep", "invalid_request"), resp.text
    resp = httpx.post(srv.url + route, content=deep(ROUTES[route]), headers=headers, timeout=30)
    assert error(resp)["code"] == "json_too_deep" and error(resp)["request_id"]


def test_limits_on_body_and_headers(keyed):
    srv, secret = keyed
    auth = {"authorization": f"Bearer {secret}"}
    big = {"text": "a" * (1_048_576 + 10)}
    resp = httpx.post(srv.url + "/v1/tts/generate", json=big, headers=auth, timeout=30)
    assert resp.status_code == 413 and error(resp)["code"] == "body_too_large"
    assert error(resp)["limit"] == 1_048_576

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(40):
            yield b"a" * 65536
    resp = httpx.post(srv.url + "/v1/tts/generate", content=chunks(), headers=auth, timeout=30)
    assert resp.status_code == 413 and error(resp)["code"] == "body_too_large"

    resp = httpx.get(srv.url + "/v1/voices", headers={"x-big": "a" * 1_000_000}, timeout=30)
    assert resp.status_code == 431 and error(resp)["code"] == "headers_too_large"

    # 50,000 characters of non-ASCII text (3 bytes each in UTF-8) fit; the server answers
    # with its own verdict on the text (not a size error).
    resp = httpx.post(srv.url + "/v1/tts/generate", headers=auth, timeout=120,
                      json={"text": "नमस्ते " * 7142, "stream": False})
    assert resp.status_code != 413, resp.text


def metric(srv, route: str, status: str) -> float:
    for line in httpx.get(srv.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("veena_requests_total{") and f'route="{route}"' in line \
                and f'status="{status}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize(("path", "route"), [
    ("/v1/tts/generate", "/v1/tts/generate"),
    ("/v1/text-to-speech/kavya/stream", "other"),  # a plugin's route, marked SYNTHESIS_OPT
])
def test_client_closing_before_its_body_is_read_is_499_and_recorded(start_server, path, route):
    srv = start_server()
    body = b'{"text": "This text never fully arrives at the server, the client left."}'
    rids = [f"gone-{i}" for i in range(30)]
    for rid in rids:  # the body is cut short: the server learns of the close first
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                  b"\r\nX-Request-ID: %s\r\nContent-Length: %d\r\n\r\n"
                  % (path.encode(), rid.encode(), len(body)) + body[:20])
        s.close()
    full = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(50)]
    for s in full:  # and a storm of whole requests whose client leaves at once
        s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                  b"\r\nContent-Length: %d\r\n\r\n" % (path.encode(), len(body)) + body)
    for s in full:
        s.close()
    deadline = time.monotonic() + 20
    while metric(srv, route, "499") < len(rids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert metric(srv, route, "499") >= len(rids)
    assert metric(srv, route, "500") == 0
    for rid in rids[:3]:
        assert srv.wait_event("tts.client_closed", rid)
    assert "http_error" not in srv.log.read_text()

    async def rows():
        from veena.platform.db.sqlite import SqliteDatabase

        db = SqliteDatabase(srv.data_dir / "veena.db")
        await db.open()
        try:
            return {r.request_id: r for r in await db.sentences(limit=1000)}
        finally:
            await db.close()
    import asyncio

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        stored = asyncio.run(rows())
        if all(r in stored for r in rids) and len(stored) >= len(rids) + 50:
            break
        time.sleep(0.2)
    assert all(stored[r].outcome == "cancelled" and stored[r].error_code == "client_closed"
               for r in rids)
    assert len(stored) >= len(rids) + 50  # the whole requests are recorded too
    ok = httpx.post(srv.url + "/v1/tts/generate", json={"text": "Still fine.", "stream": False},
                    timeout=60)
    assert ok.status_code == 200
