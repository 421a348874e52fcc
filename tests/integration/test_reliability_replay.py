"""`veena db replay`: rows set aside as unwritable (e.g. by an older release that could not
store a NUL on PostgreSQL) are written after the fix, on the embedded store and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid

import msgspec
import pytest

from veena.platform.db import SentenceRow, open_database


@pytest.fixture(params=["sqlite", "postgres"])
def env(request, tmp_path):
    e = {k: v for k, v in os.environ.items()
         if k not in ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_KEY", "VEENA_CONFIG")}
    e["VEENA_DATA_DIR"] = str(tmp_path / "data")
    if request.param == "postgres":
        e["DATABASE_URL"] = request.getfixturevalue("pg_dsn")
    return e


def row(text: str) -> SentenceRow:
    return SentenceRow(id=uuid.uuid4().hex, request_id="rp-" + uuid.uuid4().hex[:10], key_id=None,
                       created_at=time.time(), original_text=text, normalized_text=text,
                       speaker="kavya", synthesizer="espeak", format="wav", sample_rate=24000,
                       stream=False, chunks=1, chars_requested=len(text),
                       chars_delivered=len(text), audio_seconds=1.0, bytes_sent=100,
                       ttfb_ms=None, total_ms=10.0, outcome="completed")


def stored(env: dict[str, str], request_id: str) -> list[SentenceRow]:
    async def main() -> list[SentenceRow]:
        old = {k: os.environ.get(k) for k in ("DATABASE_URL", "VEENA_DATA_DIR")}
        os.environ.update({k: env[k] for k in old if k in env})
        try:
            db = open_database("auto")
            await db.open()
            try:
                return await db.sentences(request_id=request_id)
            finally:
                await db.close()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return asyncio.run(main())


def test_db_replay_writes_set_aside_rows(env):
    spool = os.path.join(env["VEENA_DATA_DIR"], "spool")
    os.makedirs(spool)
    rows = [row("before\u0000after"), row("plain"), row("x\u2400y")]
    enc = msgspec.json.encode
    with open(os.path.join(spool, "sentences.rejected"), "wb") as f:
        f.write(enc(rows[0]) + b"\n")  # the older bare format
        for r in rows[1:]:
            f.write(enc({"reason": "UntranslatableCharacterError: x", "at": 1.0, "row": r}) + b"\n")
        f.write(b"not json\n")
    proc = subprocess.run([sys.executable, "-m", "veena.platform.cli", "db", "replay"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr  # the garbage line stays set aside
    assert "3 row(s) written, 1 still set aside" in proc.stdout
    for r in rows:
        [got] = stored(env, r.request_id)
        assert got.original_text == r.original_text
    with open(os.path.join(spool, "sentences.rejected"), "rb") as f:
        assert f.read() == b"not json\n"
