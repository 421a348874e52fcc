"""`veena keys` and `veena db` against the embedded store and a real PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys


def veena(store_env, *args, ok=True):
    proc = subprocess.run([sys.executable, "-m", "veena.platform.cli", *args], env=store_env,
                          capture_output=True, text=True, timeout=60)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_keys_lifecycle(store_env):
    created = veena(store_env, "keys", "create", "--owner", "acme", "--name", "web", "--credits", "500",
                    "--rpm", "30", "--streams", "2", "--expires-in", "30d")
    secret = created.stdout.strip()
    assert secret.startswith("vk_") and len(secret) == 46
    assert "not shown again" in created.stderr and secret not in created.stderr
    (key,) = [json.loads(line) for line in veena(store_env, "keys", "list", "--json").stdout.splitlines()]
    assert key["owner"] == "acme" and key["credits"] == 500 and key["rate_per_minute"] == 30
    assert key["max_streams"] == 2 and key["scopes"] == ["tts"] and key["expires_at"]
    assert secret not in veena(store_env, "keys", "list").stdout  # the table never shows secrets
    assert key["id"] in veena(store_env, "keys", "list", "--owner", "acme").stdout
    assert veena(store_env, "keys", "credit", key["id"], "250").stdout.strip() == "750"
    assert veena(store_env, "keys", "credit", key["id"], "-1000", ok=False).returncode == 1
    assert veena(store_env, "keys", "revoke", key["id"]).returncode == 0
    assert "revoked" in veena(store_env, "keys", "list").stdout
    assert veena(store_env, "keys", "revoke", "key_nope", ok=False).returncode == 1
    assert veena(store_env, "keys", "usage", key["id"]).stdout == ""
    assert "up to date" in veena(store_env, "db", "migrate").stdout


def test_bad_expiry_is_a_clear_error(store_env):
    proc = veena(store_env, "keys", "create", "--owner", "x", "--expires-in", "soon", ok=False)
    assert proc.returncode == 2 and "--expires-in" in proc.stderr


def test_admin_scope_periods_csv_and_export(store_env):
    """The options the admin API shares with the CLI (``veena.plugins.auth.operations``)."""
    veena(store_env, "keys", "create", "--owner", "ops", "--scope", "admin,tts")
    (key,) = [json.loads(line) for line in veena(store_env, "keys", "list", "--json").stdout.splitlines()]
    assert key["scopes"] == ["admin", "tts"] and key["state"] == "active"
    assert veena(store_env, "keys", "usage", key["id"], "--csv", "--since", "7d").stdout \
        .splitlines()[0].startswith("id,key_id,request_id,created_at")
    bad = veena(store_env, "keys", "usage", key["id"], "--since", "someday", ok=False)
    assert bad.returncode == 2 and "`since`" in bad.stderr
    assert veena(store_env, "keys", "usage", "key_nope", ok=False).returncode == 1
    scope = veena(store_env, "keys", "create", "--owner", "x", "--scope", "Not A Scope", ok=False)
    assert scope.returncode == 2 and "scope" in scope.stderr
    assert veena(store_env, "db", "export", "--since", "1d").stdout == ""
    assert veena(store_env, "db", "export", "--csv").stdout.splitlines()[0].startswith("id,")
