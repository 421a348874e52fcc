"""Keys, limits, credits and storage end to end: `veena serve` processes on loopback sharing a
real PostgreSQL and a real Redis, driven over HTTP."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest

from veena.platform.db.postgres import PostgresDatabase
from veena.plugins.auth.keys import new_key
from veena.testing.stores import run

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank. "


def db_call(dsn, fn):
    return run(lambda: PostgresDatabase(dsn), fn)


def make_key(dsn, **kw):
    secret, key = new_key(kw.pop("owner", "acme"), **kw)

    async def create(db):
        await db.create_key(key)
    db_call(dsn, create)
    return secret, key


def post(server, key=None, text="Hello there.", stream=False, header="authorization", **body):
    headers = {}
    if key is not None:
        headers[header] = f"Bearer {key}" if header == "authorization" else key
    return httpx.post(server.url + "/v1/tts/generate", json={"text": text, "stream": stream,
                                                              **body},
                      headers=headers, timeout=60)


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture
def services(pg_dsn, redis_url):
    """Environment for servers sharing one PostgreSQL and one Redis."""
    return {"DATABASE_URL": pg_dsn, "REDIS_URL": redis_url}


def test_every_key_problem_gets_its_error(services, start_server):
    dsn = services["DATABASE_URL"]
    good, key = make_key(dsn, credits=10_000)
    expired, _ = make_key(dsn, expires_at=time.time() - 5)
    revoked, rkey = make_key(dsn)
    db_call(dsn, lambda db: db.revoke_key(rkey.id))
    broke, _ = make_key(dsn, credits=0)
    server = start_server(env=services)

    def error(resp):
        return resp.status_code, resp.json()["error"]["code"]

    missing = post(server)
    assert error(missing) == (401, "missing_api_key")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.headers["x-request-id"]
    assert error(post(server, "not a key")) == (401, "invalid_api_key")
    assert error(post(server, "vk_" + "z" * 43)) == (401, "invalid_api_key")
    assert error(post(server, expired)) == (401, "expired_api_key")
    assert error(post(server, revoked)) == (401, "revoked_api_key")
    assert error(post(server, broke)) == (402, "insufficient_credits")
    too_long = post(server, good, text="Hello. " * 2000)  # 14 000 > 10 000 credits
    assert error(too_long) == (402, "insufficient_credits")
    assert too_long.json()["error"]["required"] > 10_000

    ok = post(server, good)
    assert ok.status_code == 200 and ok.content[:4] == b"RIFF"
    assert int(ok.headers["x-credits-remaining"]) < 10_000
    assert ok.headers["ratelimit-limit"] == "120"
    assert post(server, good, header="x-api-key").status_code == 200
    streamed = post(server, good, stream=True)
    assert streamed.status_code == 200 and "x-credits-remaining" in streamed.headers


def test_rate_limit_is_shared_by_two_servers(services, start_server):
    secret, _ = make_key(services["DATABASE_URL"], rate_per_minute=4)
    other, _ = make_key(services["DATABASE_URL"])
    a, b = start_server(env=services), start_server(env=services)
    codes = [post(server, secret).status_code for server in (a, b, a, b)]
    assert codes == [200] * 4
    limited = post(a, secret)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 15
    assert limited.headers["ratelimit-limit"] == "4"
    assert limited.headers["ratelimit-remaining"] == "0"
    assert int(limited.headers["ratelimit-reset"]) > 0
    assert post(b, secret).status_code == 429
    assert post(b, other).status_code == 200  # another key is not affected


def test_parallel_requests_on_two_servers_never_overspend(services, start_server):
    dsn = services["DATABASE_URL"]
    text = SENTENCE * 2  # 130 characters a request
    secret, key = make_key(dsn, credits=1000, max_streams=100)
    a, b = start_server(env=services), start_server(env=services)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: post((a, b)[i % 2], secret, text=text, format="mp3"),
                                range(16)))
    served = [r for r in results if r.status_code == 200]
    refused = [r for r in results if r.status_code == 402]
    assert len(served) + len(refused) == 16 and served and refused
    assert all(r.json()["error"]["code"] == "insufficient_credits" for r in refused)

    def settled():
        rows = db_call(dsn, lambda db: db.usage(key.id))
        return rows if len(rows) == len(served) else None
    rows = wait_for(settled)
    balance = db_call(dsn, lambda db: db.get_key(key.id)).credits
    charged = sum(u.credits for u in rows)
    assert balance >= 0 and charged + balance == 1000
    assert all(u.outcome == "completed" and u.credits == u.chars == u.chars_requested
               for u in rows)
    assert len(served) * rows[0].chars_requested <= 1000


def test_disconnect_after_first_chunk_charges_only_what_was_sent(services, start_server):
    dsn = services["DATABASE_URL"]
    secret, key = make_key(dsn, credits=100_000)
    server = start_server(env=services)
    text = SENTENCE * 60  # minutes of speech, 60 chunks
    with httpx.stream("POST", server.url + "/v1/tts/generate", timeout=60,
                      json={"text": text, "format": "wav"},
                      headers={"Authorization": f"Bearer {secret}"}) as resp:
        assert resp.status_code == 200
        first = next(resp.iter_raw())
        assert first
    # the connection is closed here, long before the end of the audio
    (row,) = wait_for(lambda: db_call(dsn, lambda db: db.usage(key.id)))
    assert row.outcome == "cancelled"
    assert 0 < row.chars < row.chars_requested / 4
    assert row.credits == row.chars and row.held >= row.chars_requested
    balance = db_call(dsn, lambda db: db.get_key(key.id)).credits
    assert balance == 100_000 - row.credits


def test_every_request_is_stored_with_its_text(services, start_server):
    dsn = services["DATABASE_URL"]
    secret, key = make_key(dsn)
    server = start_server(env=services)
    text = "Dr. Rao paid ₹1,250 on 12/03/2024. नमस्ते!"
    resp = post(server, secret, text=text)
    assert resp.status_code == 200
    rid = resp.headers["x-request-id"]
    (row,) = wait_for(lambda: db_call(dsn, lambda db: db.sentences(request_id=rid)))
    assert row.original_text == text and row.normalized_text
    assert row.key_id == key.id and row.outcome == "completed" and row.format == "wav"
    assert row.audio_seconds > 0 and row.ttfb_ms > 0
    server.wait_event("tts.stream_completed", rid)  # the request's last log line is written
    log = server.log.read_text()
    assert text not in log and secret not in log and "नमस्ते" not in log


def test_secure_by_default_on_a_public_address(pg_dsn, start_server, tmp_path):
    public = '[server]\nhost = "0.0.0.0"\n'
    with pytest.raises(RuntimeError, match="refusing to serve without authentication"):
        start_server(public)
    assert start_server(public + "allow_open_access = true\n").health()["status"] == "ok"
    make_key(pg_dsn)
    assert start_server(public, env={"DATABASE_URL": pg_dsn}).health()["status"] == "ok"
