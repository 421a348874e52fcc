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

from veena.platform.db import SentenceRow, open_database


def row(text: str) -> SentenceRow:
    return SentenceRow(id=uuid.uuid4().hex, request_id="rp-" + uuid.uuid4().hex[:10], key_id=None,
                       created_at=time.time(), original_text=text, normalized_text=text,
                       speaker="kavya", synthesizer="espeak", format="wav", sample_rate=24000,
                       stream=False, chunks=1, chars_requested=len(text),
                       chars_delivered=len(text), audio_seconds=1.0, bytes_sent=100,
                       ttfb_ms=None, total_ms=10.0, outcome="completed")


def stored(store_env: dict[str, str], request_id: str) -> list[SentenceRow]:
    async def main() -> list[SentenceRow]:
        old = {k: os.environ.get(k) for k in ("DATABASE_URL", "VEENA_DATA_DIR")}
        os.environ.update({k: store_env[k] for k in old if k in store_env})
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


def test_db_replay_writes_set_aside_rows(store_env):
    spool = os.path.join(store_env["VEENA_DATA_DIR"], "spool")
    os.makedirs(spool)
    rows = [row("before\u0000after"), row("plain"), row("x\u2400y")]
    enc = msgspec.json.encode
    with open(os.path.join(spool, "sentences.rejected"), "wb") as f:
        f.write(enc(rows[0]) + b"\n")  # the older bare format
        for r in rows[1:]:
            f.write(enc({"reason": "UntranslatableCharacterError: x", "at": 1.0, "row": r}) + b"\n")
        f.write(b"not json\n")
    proc = subprocess.run([sys.executable, "-m", "veena.platform.cli", "db", "replay"], env=store_env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr  # the garbage line stays set aside
    assert "3 row(s) written, 1 still set aside" in proc.stdout
    for r in rows:
        [got] = stored(store_env, r.request_id)
        assert got.original_text == r.original_text
    with open(os.path.join(spool, "sentences.rejected"), "rb") as f:
        assert f.read() == b"not json\n"
