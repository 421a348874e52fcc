"""The admin API (``plugins/admin``) on real servers on loopback, on SQLite and on PostgreSQL:
scopes (no key 401, a non-admin key 403), keys created, listed, credited and revoked over HTTP
and seen by the CLI (one implementation), usage per key and period as JSON and CSV, sentences
exported for a period, and the audit log (who and what, never a secret)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import Server


def veena(env, *args, ok=True):
    proc = subprocess.run([sys.executable, "-m", "veena.platform.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def cli_key(env, *args) -> str:
    return veena(env, "keys", "create", *args).stdout.strip()


def bearer(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key else {}


def code(resp) -> tuple[int, str]:
    return resp.status_code, resp.json()["error"]["code"]


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture
def admin_server(store_env, tmp_path):
    """A server on the store of ``store_env`` (SQLite, then PostgreSQL) with an admin key and
    a plain tts key made by the CLI; yields (server, env, admin secret, tts secret)."""
    admin = cli_key(store_env, "--owner", "ops", "--name", "console", "--scope", "admin")
    tts = cli_key(store_env, "--owner", "acme")
    srv = Server("[plugins.storage]\nflush_seconds = 0.05\n", tmp_path, env=store_env)
    yield srv, store_env, admin, tts
    srv.stop()


def test_scopes_guard_every_admin_route(admin_server):
    srv, _, admin, tts = admin_server
    routes = [("GET", "/v1/admin/keys"), ("POST", "/v1/admin/keys"),
              ("GET", "/v1/admin/keys/key_x"), ("POST", "/v1/admin/keys/key_x/revoke"),
              ("POST", "/v1/admin/keys/key_x/credits"), ("GET", "/v1/admin/keys/key_x/usage"),
              ("GET", "/v1/admin/keys/key_x/usage.csv"), ("GET", "/v1/admin/sentences"),
              ("GET", "/v1/admin/sentences.csv")]
    bodies = {"/v1/admin/keys": {"owner": "x"}, "/v1/admin/keys/key_x/credits": {"amount": 1}}
    for method, path in routes:
        def call(key):
            return httpx.request(method, srv.url + path, json=bodies.get(path),
                                 headers=bearer(key), timeout=10)
        assert code(call(None)) == (401, "missing_api_key"), path
        denied = call(tts)
        assert code(denied) == (403, "insufficient_scope"), path
        assert denied.json()["error"]["required_scope"] == "admin"
    # An admin-only key does admin work and nothing else: synthesis wants `tts`.
    resp = httpx.post(srv.url + "/v1/tts/generate", headers=bearer(admin),
                      json={"text": "Hello.", "stream": False}, timeout=30)
    assert code(resp) == (403, "insufficient_scope")
    assert httpx.get(srv.url + "/v1/admin/keys", headers=bearer(admin), timeout=10).status_code \
        == 200
    log = srv.log.read_text()
    assert '"admin.refused"' in log and tts not in log and admin not in log


def test_keys_usage_and_sentences_over_http_match_the_cli(admin_server):
    srv, env, admin, _ = admin_server
    api = httpx.Client(base_url=srv.url, headers=bearer(admin), timeout=30)

    resp = api.post("/v1/admin/keys", json={"owner": "globex", "name": "mobile", "credits": 100,
                                            "rate_per_minute": 50, "expires_in": "30d"})
    assert resp.status_code == 201, resp.text
    made = resp.json()
    secret, info = made["key"], made["info"]
    assert secret.startswith("vk_") and info["prefix"] == secret[:8]
    assert (info["owner"], info["scopes"], info["credits"], info["state"]) == \
        ("globex", ["tts"], 100, "active")
    assert info["expires_at"] > time.time() + 29 * 86400
    kid = info["id"]

    # The CLI sees what HTTP made (one store, one implementation) and never prints a secret.
    listed = [json.loads(line) for line in veena(env, "keys", "list", "--json").stdout.splitlines()]
    assert {k["id"] for k in listed} >= {kid} and secret not in json.dumps(listed)
    over_http = api.get("/v1/admin/keys").json()
    assert [k["id"] for k in over_http] == [k["id"] for k in listed]
    assert all("key_hash" not in k and "key" not in k for k in over_http)
    assert [k["id"] for k in api.get("/v1/admin/keys", params={"owner": "globex"}).json()] == [kid]
    one = api.get(f"/v1/admin/keys/{kid}").json()
    for ts in ("created_at", "expires_at"):  # PostgreSQL keeps microseconds
        assert one.pop(ts) == pytest.approx(info.pop(ts), abs=1e-5)
    assert one == info

    # The new key speaks; its usage is read back per period, as JSON and as CSV.
    for text in ("Hello there.", "A second sentence."):
        r = httpx.post(srv.url + "/v1/tts/generate", headers=bearer(secret),
                       json={"text": text, "stream": False}, timeout=30)
        assert r.status_code == 200, r.text
    report = wait_for(lambda: (r := api.get(f"/v1/admin/keys/{kid}/usage").json())["rows"]
                      and len(r["rows"]) == 2 and r)
    assert report["key_id"] == kid and report["truncated"] is False
    totals = report["totals"]
    assert totals["requests"] == 2 and totals["chars"] == sum(u["chars"] for u in report["rows"])
    assert totals["credits"] == 100 - api.get(f"/v1/admin/keys/{kid}").json()["credits"] > 0
    rows = list(csv.DictReader(io.StringIO(api.get(f"/v1/admin/keys/{kid}/usage.csv").text)))
    assert [r["request_id"] for r in rows] == [u["request_id"] for u in report["rows"]]
    cli_rows = list(csv.DictReader(io.StringIO(
        veena(env, "keys", "usage", kid, "--csv").stdout)))
    assert cli_rows == rows
    future = api.get(f"/v1/admin/keys/{kid}/usage", params={"since": "2999-01-01"}).json()
    assert future["rows"] == [] and future["totals"]["requests"] == 0
    assert len(api.get(f"/v1/admin/keys/{kid}/usage", params={"since": "1h", "limit": 1})
               .json()["rows"]) == 1
    assert api.get(f"/v1/admin/keys/{kid}/usage", params={"since": "1h", "limit": 1}).json()[
        "truncated"] is True
    bad = api.get(f"/v1/admin/keys/{kid}/usage", params={"since": "last tuesday"})
    assert code(bad) == (400, "invalid_request") and bad.json()["error"]["param"] == "since"
    assert code(api.get("/v1/admin/keys/key_nope/usage")) == (404, "key_not_found")

    # Sentences of a period, JSON and CSV; the CLI exports the same rows.
    export = wait_for(lambda: (e := api.get("/v1/admin/sentences", params={"since": "1h"})
                               .json())["rows"] and len(e["rows"]) >= 2 and e)
    texts = {s["original_text"] for s in export["rows"]}
    assert {"Hello there.", "A second sentence."} <= texts
    table = list(csv.DictReader(io.StringIO(api.get("/v1/admin/sentences.csv").text)))
    assert {r["original_text"] for r in table} >= texts
    cli = [json.loads(line) for line in veena(env, "db", "export", "--since", "1h").stdout
           .splitlines()]
    assert {s["request_id"] for s in cli} == {s["request_id"] for s in export["rows"]}
    assert api.get("/v1/admin/sentences", params={"until": "2000-01-01"}).json()["rows"] == []

    # Credit and revoke; the revoked key stops working.
    balance = api.get(f"/v1/admin/keys/{kid}").json()["credits"]
    assert api.post(f"/v1/admin/keys/{kid}/credits", json={"amount": 50}).json() == \
        {"key_id": kid, "credits": balance + 50}
    short = api.post(f"/v1/admin/keys/{kid}/credits", json={"amount": -10_000})
    assert code(short) == (400, "insufficient_credits")
    assert code(api.post("/v1/admin/keys/key_nope/credits", json={"amount": 1})) == \
        (404, "key_not_found")
    revoked = api.post(f"/v1/admin/keys/{kid}/revoke").json()
    assert revoked["state"] == "revoked" and revoked["revoked"] is True
    wait_for(lambda: httpx.post(srv.url + "/v1/tts/generate", headers=bearer(secret),
                                json={"text": "Hi.", "stream": False},
                                timeout=30).status_code == 401)
    assert "revoked" in veena(env, "keys", "list").stdout

    # Bad requests: a stable code and the field at fault.
    for body, param in (({"owner": " "}, "owner"), ({"owner": "x", "scopes": ["Bad Scope"]},
                                                      "scopes"),
                        ({"owner": "x", "credits": -1}, "credits"),
                        ({"owner": "x", "expires_in": "soon"}, "expires_in")):
        resp = api.post("/v1/admin/keys", json=body)
        assert code(resp) == (400, "invalid_request") and resp.json()["error"]["param"] == \
            param, body

    # The audit log: every action, who did it, never a secret.
    srv.wait_event("admin.key_revoked")
    log = srv.log.read_text()
    events = [json.loads(line) for line in log.splitlines()
              if line.startswith("{") and '"veena.audit"' in line]
    actions = {e["event"] for e in events}
    assert {"admin.key_created", "admin.keys_listed", "admin.usage_read",
            "admin.sentences_exported", "admin.key_credited", "admin.key_revoked"} <= actions
    created = next(e for e in events if e["event"] == "admin.key_created")
    assert created["key_id"] == kid and created["actor_prefix"] == admin[:8]
    assert created["actor_id"].startswith("key_") and created["owner"] == "globex"
    assert secret not in log and admin not in log


def test_admin_api_on_an_open_server_wants_a_key(server):
    """No key exists: the service is open on loopback, the admin API is not."""
    resp = httpx.get(server.url + "/v1/admin/keys", timeout=10)
    assert code(resp) == (401, "missing_api_key")
    resp = httpx.post(server.url + "/v1/admin/keys", json={"owner": "me"}, timeout=10)
    assert code(resp) == (401, "missing_api_key")


def test_schema_documents_the_admin_routes(server):
    doc = httpx.get(server.url + "/schema/openapi.json", timeout=10).json()
    paths = doc["paths"]
    assert {"/v1/admin/keys", "/v1/admin/keys/{key_id}", "/v1/admin/keys/{key_id}/revoke",
            "/v1/admin/keys/{key_id}/credits", "/v1/admin/keys/{key_id}/usage",
            "/v1/admin/keys/{key_id}/usage.csv", "/v1/admin/sentences",
            "/v1/admin/sentences.csv"} <= set(paths)
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, method in (("/v1/admin/keys", "post"), ("/v1/admin/keys/{key_id}/usage", "get")):
        responses = paths[path][method]["responses"]
        for status in ("401", "403", "503"):
            assert responses[status]["content"]["application/json"]["schema"] == error
    assert "text/csv" in paths["/v1/admin/sentences.csv"]["get"]["responses"]["200"]["content"]
    body = paths["/v1/admin/keys"]["post"]["requestBody"]["content"]["application/json"]
    assert "owner" in str(body) or "$ref" in body["schema"]
    assert {"since", "until", "limit"} <= {p["name"] for p in
                                           paths["/v1/admin/sentences"]["get"]["parameters"]}
