"""Issue 14 ("in the suite"): PostgreSQL stopped and restarted while a real `veena serve` is
under load, with texts that carry NUL characters mixed in: every request is served and every
record lands, exactly once, with the text as sent."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from tests.support.services import Postgres
from veena.platform.db.postgres import PostgresDatabase

TEXT = "A short sentence, synthesized while the database comes and goes."


@pytest.fixture
def private_postgres():
    """A cluster of its own: this test stops and restarts it."""
    pg = Postgres()
    yield pg
    pg.destroy()


def rows(dsn: str) -> dict:
    async def main() -> dict:
        db = PostgresDatabase(dsn)
        await db.open()
        try:
            return {r.request_id: r for r in await db.sentences(limit=100_000)}
        finally:
            await db.close()
    return asyncio.run(main())


def test_postgres_outage_under_load_loses_no_record(private_postgres, start_server):
    pg = private_postgres
    dsn = pg.new_database()
    srv = start_server("[plugins.storage]\nretry_seconds = 0.3\n", env={"DATABASE_URL": dsn})
    sent: dict[str, tuple[int, str]] = {}
    stop = threading.Event()
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            i = 0
            while not stop.is_set():
                rid = f"pg-{n}-{i}"
                text = f"before\u0000after {rid}. {TEXT}" if i % 4 == 0 else f"{TEXT} {rid}"
                resp = c.post("/v1/tts/generate", json={"text": text, "stream": i % 2 == 0},
                              headers={"x-request-id": rid})
                with lock:
                    sent[rid] = (resp.status_code, text)
                i += 1

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(2)
    pg.stop()
    time.sleep(3)
    pg.start()
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join(60)

    statuses = {s for s, _ in sent.values()}
    assert statuses == {200}, statuses  # the store being down never fails a request
    assert len(sent) > 40 and sum("\u0000" in t for _, t in sent.values()) > 10
    deadline = time.monotonic() + 30
    while True:
        found = rows(dsn)
        if set(sent) <= set(found) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    missing = sorted(set(sent) - set(found))
    assert not missing, f"{len(missing)} of {len(sent)} records did not land: {missing[:5]}"
    for rid, (_, text) in sent.items():
        assert found[rid].original_text == text, rid
        assert found[rid].outcome == "completed", rid
    assert len(found) == len(sent)  # exactly once: nothing replayed twice
    assert not list((srv.data_dir / "spool").glob("*rejected*"))  # no row set aside
