"""Sentence storage through the pipeline: what is stored, off the response path, and nothing
lost while PostgreSQL (or Supabase) is down."""

from __future__ import annotations

import asyncio
import inspect
import uuid

import pytest

from tests.support.fakes import config, synthesize, veena
from tests.support.services import Postgres
from veena.platform.db.postgres import PostgresDatabase

TEXT = "Dr. Rao   paid. नमस्ते दुनिया!"


def test_every_request_is_stored_with_its_texts_and_metadata(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SUPABASE_URL", raising=False)

    async def main():
        # every sentence its own chunk (the chunk plugin keeps short text whole by default)
        async with veena(config(tmp_path, chunk={"min_chars": 0, "short_chars": 0})) as (p, _):
            job, _ = await synthesize(p, TEXT, request_id="done")
            await synthesize(p, TEXT, request_id="gone", take=1)
            store = p.runtime.state["storage"]
            await p.drain()
            await store.queue.flush()
            done = (await store.db.sentences(request_id="done"))[0]
            assert done.original_text == TEXT
            assert done.normalized_text == job.normalized_text != TEXT
            assert (done.outcome, done.format, done.speaker, done.synthesizer, done.stream) == \
                ("completed", "raw", "kavya", "tone", True)
            assert done.chunks == len(job.chunks) >= 2
            assert done.chars_delivered == done.chars_requested
            assert done.audio_seconds > 0 and done.ttfb_ms > 0 and done.key_id is None
            gone = (await store.db.sentences(request_id="gone"))[0]
            assert gone.outcome == "cancelled" and gone.chars_delivered < gone.chars_requested
            assert store.stats["written"] == 2 and store.stats["queue_full"] == 0
    asyncio.run(main())


def test_nul_text_on_postgres_loses_nothing_of_its_batch(pg_dsn, tmp_path, monkeypatch):
    """Issue 14.1: a NUL in one request's text once set aside its whole batch (other users'
    rows too). Now every row lands, the NUL one exactly as sent."""
    monkeypatch.setenv("DATABASE_URL", pg_dsn)

    async def main():
        async with veena(config(tmp_path, storage={"flush_seconds": 0.5})) as (p, _):
            store = p.runtime.state["storage"]
            tag = uuid.uuid4().hex[:8]
            texts = {f"n-{tag}-{i}": (f"before\u0000after {i}" if i % 3 == 0 else f"{TEXT} {i}")
                     for i in range(12)}
            await asyncio.gather(*(synthesize(p, t, request_id=r) for r, t in texts.items()))
            await p.drain()
            await store.queue.flush()
            for rid, text in texts.items():
                [row] = await store.db.sentences(request_id=rid)
                assert row.original_text == text
            assert store.stats["rejected"] == 0 and store.stats["written"] == 12
            assert not (tmp_path / "spool" / "sentences.rejected").exists()
    asyncio.run(main())


def test_a_spool_written_before_records_were_stored_as_they_are_is_replayed(tmp_path,
                                                                            monkeypatch):
    """Spool lines of the former row type (the same fields, written by an older process) are
    read as records and stored on the next start."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    line = ('{"id":"old-1","request_id":"old-req","key_id":null,"created_at":1700000000.5,'
            '"original_text":"Dr. Rao \\u0000","normalized_text":"Doctor Rao","speaker":"kavya",'
            '"synthesizer":"tone","format":"raw","sample_rate":24000,"stream":true,"chunks":1,'
            '"chars_requested":9,"chars_delivered":9,"audio_seconds":0.5,"bytes_sent":100,'
            '"ttfb_ms":null,"total_ms":12.0,"outcome":"completed","error_code":null}')
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "sentences-1-0000abcd.jsonl").write_text(line + "\n")

    async def main():
        async with veena(config(tmp_path)) as (p, _):
            store = p.runtime.state["storage"]
            assert await store.queue.wait_recovered(10)
            (row,) = await store.db.sentences(request_id="old-req")
            assert (row.id, row.original_text, row.created_at, row.total_ms) == \
                ("old-1", "Dr. Rao \u0000", 1700000000.5, 12.0)
            assert store.stats["replayed"] == 1
    asyncio.run(main())


def test_recording_is_a_queue_put_not_a_database_call(tmp_path):
    """``veena_request_finished`` returns no awaitable: nothing for the request to wait on."""
    from veena.plugins import storage

    class Runtime:
        state = {"storage": storage.SentenceWriter(storage.Config(spool_dir=str(tmp_path)),
                                                    db=None)}

    assert inspect.getsource(storage.veena_request_finished).count("await") == 0

    async def main():
        from veena.platform.runtime import RequestRecord

        rec = RequestRecord(request_id="r", key_id=None, speaker="s", synthesizer="x", format="wav",
                            sample_rate=16000, stream=True, original_text="a", normalized_text="a",
                            chunks=1, chars_requested=1, chars_delivered=1, audio_seconds=0.1,
                            bytes_sent=10, ttfb_ms=1.0, total_ms=2.0, outcome="completed")
        assert storage.veena_request_finished(record=rec, runtime=Runtime) is None
    asyncio.run(main())


@pytest.fixture
def private_postgres():
    """A cluster of its own: this test stops and restarts it."""
    pg = Postgres()
    yield pg
    pg.destroy()


def test_spool_while_postgres_is_down_and_replay_when_it_returns(private_postgres, tmp_path,
                                                                   monkeypatch):
    pg = private_postgres
    dsn = pg.new_database()
    monkeypatch.setenv("DATABASE_URL", dsn)
    cfg = config(tmp_path, storage={"retry_seconds": 0.2})

    async def main():
        async with veena(cfg) as (p, _):
            store = p.runtime.state["storage"]
            for i in range(3):
                await synthesize(p, TEXT, request_id=f"before-{i}")
            await p.drain()
            await store.queue.flush()
            assert await store.db.count_sentences() == 3

            pg.stop()
            for i in range(5):  # requests still succeed while the database is down
                text = TEXT if i % 2 else f"before\u0000after {i}"  # NULs mixed in
                job, _ = await synthesize(p, text, request_id=f"during-{i}")
                assert job.outcome == "completed"
            await p.drain()
            await store.queue.flush()
            assert store.stats["spooled"] == 5 and store.stats["database_down"] == 1
            assert list((tmp_path / "spool").glob("sentences-*.jsonl"))

            pg.start()
            assert await store.queue.wait_recovered(30)
            ids = {r.request_id for r in await store.db.sentences(limit=100)}
            assert ids == {f"before-{i}" for i in range(3)} | {f"during-{i}" for i in range(5)}
            assert await store.db.count_sentences() == 8  # exactly once
            assert store.stats["replayed"] == 5 and store.stats["lost"] == 0
            assert store.stats["rejected"] == 0
            nul = (await store.db.sentences(request_id="during-0"))[0]
            assert nul.original_text == "before\u0000after 0"
    asyncio.run(main())


def test_shutdown_while_postgres_is_down_keeps_rows_for_the_next_start(private_postgres,
                                                                       tmp_path, monkeypatch):
    pg = private_postgres
    dsn = pg.new_database()
    monkeypatch.setenv("DATABASE_URL", dsn)
    cfg = config(tmp_path, storage={"retry_seconds": 0.2})

    async def main():
        async with veena(cfg) as (p, _):
            pg.stop()
            for i in range(4):
                await synthesize(p, TEXT, request_id=f"r{i}")
        pg.start()
        async with veena(cfg) as (p, _):
            store = p.runtime.state["storage"]
            assert await store.queue.wait_recovered(30)
        db = PostgresDatabase(dsn)
        try:
            assert await db.count_sentences() == 4
        finally:
            await db.close()
    asyncio.run(main())


def test_supabase_outage_spools_and_replays(pg_dsn, tmp_path, monkeypatch):
    from tests.support.postgrest import FakePostgrest

    async def migrate():
        db = PostgresDatabase(pg_dsn)
        await db.migrate()
        await db.close()
    asyncio.run(migrate())
    fake = FakePostgrest(pg_dsn)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("SUPABASE_URL", fake.url)
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", fake.service_key)
    cfg = config(tmp_path, storage={"retry_seconds": 0.2, "migrate": False}, auth={"mode": "off"})

    async def main():
        async with veena(cfg) as (p, _):
            store = p.runtime.state["storage"]
            assert store.db.name == "supabase"
            fake.down = True
            await synthesize(p, TEXT, request_id="x1")
            await p.drain()
            await store.queue.flush()
            assert store.stats["spooled"] == 1
            fake.down = False
            assert await store.queue.wait_recovered(30)
            (row,) = await store.db.sentences(request_id="x1")
            assert row.original_text == TEXT
        posts = [r for r in fake.requests if r["path"] == "/rest/v1/veena_sentences"
                 and r["method"] == "POST"]
        assert posts and all(r["headers"]["apikey"] == fake.service_key for r in posts)
        assert "resolution=ignore-duplicates" in posts[-1]["headers"]["prefer"]
        assert ("on_conflict", "id") in posts[-1]["query"]
    try:
        asyncio.run(main())
    finally:
        fake.stop()


def test_queue_counters_are_published_as_metrics(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)

    async def main():
        async with veena(config(tmp_path)) as (p, _):
            await synthesize(p, TEXT)
            await p.drain()
            await p.runtime.state["storage"].queue.flush()
            text = p.runtime.telemetry.prometheus().decode()
            import re

            assert re.search(r'veena_storage_rows\{[^}]*state="written"\} 1\.0', text)
            assert re.search(r'veena_storage_rows\{[^}]*state="queue_full"\} 0\.0', text)
            assert "veena_ratelimit" in text and "veena_auth_keys_cached" in text
    asyncio.run(main())
