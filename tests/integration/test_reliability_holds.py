"""Issue 14.4: credit holds are leases. A live stream's hold is renewed and kept; the hold of a
process killed with SIGKILL mid-stream is given back by another process within about a lease."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

import httpx

from veena.platform.db.sqlite import SqliteDatabase

LEASE = 4.0
LONG = "This sentence is one of very many in a long text read aloud slowly. " * 400
CREDITS = 1_000_000


def balance(data_dir, key_id: str) -> int:
    async def main() -> int:
        db = SqliteDatabase(data_dir / "veena.db")
        await db.open()
        try:
            return (await db.get_key(key_id)).credits
        finally:
            await db.close()
    return asyncio.run(main())


def slow_stream(url: str, secret: str, started: threading.Event) -> None:
    try:
        with httpx.Client(timeout=60) as c, c.stream(
                "POST", url + "/v1/tts/generate", json={"text": LONG, "stream": True},
                headers={"authorization": f"Bearer {secret}"}) as resp:
            assert resp.status_code == 200
            for _ in resp.iter_raw(4096):
                started.set()
                time.sleep(0.05)
    except httpx.HTTPError:
        pass  # the server is killed under it
    finally:
        started.set()


def test_sigkill_mid_stream_hold_is_reclaimed_live_one_kept(start_server, tmp_path):
    data = tmp_path / "shared"
    env = {**os.environ, "VEENA_DATA_DIR": str(data)}
    out = subprocess.run([sys.executable, "-m", "veena.platform.cli", "keys", "create",
                          "--owner", "lease", "--credits", str(CREDITS)], env=env,
                         capture_output=True, text=True, check=True, timeout=60)
    secret = out.stdout.strip()
    listed = subprocess.run([sys.executable, "-m", "veena.platform.cli", "keys", "list",
                             "--json"], env=env, capture_output=True, text=True, check=True,
                            timeout=60).stdout
    import json

    key_id = json.loads(listed.splitlines()[0])["id"]
    cfg = f"[plugins.auth]\nhold_lease_seconds = {LEASE}\n"
    doomed = start_server(cfg, env={"VEENA_DATA_DIR": str(data)})
    keeper = start_server(cfg, env={"VEENA_DATA_DIR": str(data)})  # reclaims lapsed holds

    started = threading.Event()
    reader = threading.Thread(target=slow_stream, args=(doomed.url, secret, started), daemon=True)
    reader.start()
    assert started.wait(30)
    held = CREDITS - balance(data, key_id)
    assert held > 0
    time.sleep(LEASE * 2)  # two leases: renewed by the live stream, so still held
    assert CREDITS - balance(data, key_id) == held

    doomed.proc.kill()  # SIGKILL: no settlement, no shutdown hook
    doomed.proc.wait(10)
    t0 = time.monotonic()
    while balance(data, key_id) != CREDITS and time.monotonic() - t0 < LEASE * 3:
        time.sleep(0.2)
    took = time.monotonic() - t0
    assert balance(data, key_id) == CREDITS, "the killed process's hold was never given back"
    print(f"hold reclaimed {took:.2f} s after SIGKILL (lease {LEASE} s)")
    assert took <= LEASE * 1.25 + 2, took
    assert "lease lapsed" in keeper.log.read_text()
    reader.join(10)
