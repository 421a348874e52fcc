"""Issue 14.6: a new key and a revocation reach a running server within about a second (the
periodic reload stays at 30 s), on SQLite and PostgreSQL. Prints the measured delays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest

LIMIT_S = 1.5


@pytest.fixture(params=["sqlite", "postgres"])
def store_env(request, tmp_path):
    env = {"VEENA_DATA_DIR": str(tmp_path / "shared")}
    if request.param == "postgres":
        env["DATABASE_URL"] = request.getfixturevalue("pg_dsn")
    return request.param, env


def cli(env: dict[str, str], *args: str) -> str:
    full = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run([sys.executable, "-m", "veena.platform.cli", *args],
                          env={**full, **env}, capture_output=True, text=True, check=True,
                          timeout=60).stdout


def until(predicate, limit: float = 10.0) -> float:
    """Seconds until ``predicate()`` holds (raises after ``limit``)."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > limit:
            raise AssertionError("not within the limit")
        time.sleep(0.02)
    return time.monotonic() - t0


def status(srv, key: str | None = None) -> tuple[int, str | None]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    resp = httpx.post(srv.url + "/v1/tts/generate", json={"text": "Hi.", "stream": False},
                      headers=headers, timeout=30)
    code = resp.json()["error"]["code"] if resp.status_code >= 400 else None
    return resp.status_code, code


def test_key_changes_reach_a_running_server_within_a_second(start_server, store_env):
    kind, env = store_env
    srv = start_server("[plugins.auth]\nmode = \"auto\"\nrefresh_seconds = 30\n", env=env)
    assert status(srv)[0] == 200  # no key yet: open on loopback

    secret = cli(env, "keys", "create", "--owner", "instant").strip()
    created = until(lambda: status(srv) == (401, "missing_api_key"))
    assert status(srv, secret)[0] == 200
    key_id = [json.loads(x)["id"] for x in cli(env, "keys", "list", "--json").splitlines()
              if json.loads(x)["owner"] == "instant" and not json.loads(x)["revoked"]][0]
    cli(env, "keys", "revoke", key_id)
    revoked = until(lambda: status(srv, secret) == (401, "revoked_api_key"))
    print(f"\n{kind}: new key enforced after {created:.3f} s, revocation after {revoked:.3f} s")
    assert created < LIMIT_S and revoked < LIMIT_S
