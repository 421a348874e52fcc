"""Issue 14.4 ("in the suite"): SIGTERM while keyed clients read slowly settles their credits for
exactly what was delivered (no hold left), with a record and a usage row each, and exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from veena.platform.db.sqlite import SqliteDatabase

GRACE = 2.0
CREDITS = 1_000_000
LONG = "This sentence is one of very many in a long text read aloud slowly. " * 400


def reader(port: int, secret: str, rid: str, fast: threading.Event,
           started: threading.Event, result: dict) -> None:
    """A streamed POST over a raw socket, read slowly until ``fast`` is set, then to the end."""
    body = json.dumps({"text": LONG, "stream": True, "format": "wav"}).encode()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    s.settimeout(30)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"POST /v1/tts/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                  b"\r\nAuthorization: Bearer %s\r\nX-Request-ID: %s\r\nContent-Length: %d"
                  b"\r\n\r\n" % (secret.encode(), rid.encode(), len(body)) + body)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        result["status"] = int(data.split()[1])
        started.set()
        while True:
            if not fast.is_set():
                time.sleep(0.05)
            piece = s.recv(4096 if not fast.is_set() else 1 << 20)
            if not piece:
                break
            data += piece
        result["terminated"] = data.endswith(b"0\r\n\r\n")
    except OSError as exc:
        result["error"] = repr(exc)
    finally:
        started.set()
        s.close()


def test_sigterm_settles_credits_for_what_was_delivered(start_server, tmp_path):
    data = tmp_path / "data"
    env = {**os.environ, "VEENA_DATA_DIR": str(data)}
    cli = [sys.executable, "-m", "veena.platform.cli", "keys"]
    secret = subprocess.run([*cli, "create", "--owner", "drain", "--credits", str(CREDITS)],
                            env=env, capture_output=True, text=True, check=True,
                            timeout=60).stdout.strip()
    key_id = json.loads(subprocess.run([*cli, "list", "--json"], env=env, capture_output=True,
                                       text=True, check=True, timeout=60)
                        .stdout.splitlines()[0])["id"]
    srv = start_server(f"[server]\nshutdown_grace_s = {GRACE}\n",
                       env={"VEENA_DATA_DIR": str(data)})
    fast = threading.Event()
    rids = [f"drain-{i}" for i in range(3)]
    results = {rid: {} for rid in rids}
    started = {rid: threading.Event() for rid in rids}
    threads = [threading.Thread(target=reader, args=(srv.port, secret, rid, fast, started[rid],
                                                     results[rid]), daemon=True)
               for rid in rids]
    for t in threads:
        t.start()
    for rid in rids:
        assert started[rid].wait(30) and results[rid].get("status") == 200, results[rid]

    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(GRACE + 0.3)
    fast.set()  # the readers keep up once the grace is over
    assert srv.proc.wait(GRACE + 15) == 0
    for t in threads:
        t.join(10)
    for rid in rids:
        assert results[rid].get("terminated") and "error" not in results[rid], results[rid]

    async def state():
        db = SqliteDatabase(data / "veena.db")
        await db.open()
        try:
            rows = {r.request_id: r for r in await db.sentences(limit=100)}
            return rows, (await db.get_key(key_id)).credits, await db.usage(key_id)
        finally:
            await db.close()
    rows, balance, usage = asyncio.run(state())
    delivered = 0
    for rid in rids:
        row = rows[rid]
        assert (row.outcome, row.error_code, row.key_id) == ("failed", "shutdown", key_id)
        assert 0 < row.chars_delivered < row.chars_requested
        delivered += row.chars_delivered
    # per_char = 1: each pays for the characters of the chunks it received, and no hold is
    # left on the balance.
    assert balance == CREDITS - delivered, (balance, CREDITS, delivered)
    assert len(usage) == len(rids)
