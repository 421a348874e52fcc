"""The store contract suites (``veena.testing.stores``) over every built-in adapter: SQLite,
PostgreSQL (asyncpg), Supabase (the real client against a PostgREST look-alike backed by
PostgreSQL) and, when SUPABASE_URL and SUPABASE_SERVICE_KEY are set, a live Supabase project;
and over a third-party-style store that implements one interface only."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import LIVE_SUPABASE
from tests.support.fakes import config, synthesize, veena
from tests.support.memory_store import MemorySentences
from veena.platform.db import CreditLedger, SentenceStore, open_database
from veena.platform.db.postgres import PostgresDatabase
from veena.platform.db.sqlite import SqliteDatabase
from veena.platform.db.supabase import SupabaseDatabase
from veena.platform.errors import ConfigError
from veena.testing.stores import (CreditLedgerContract, KeyStoreContract, SentenceStoreContract,
                                  run)

LIVE = len(LIVE_SUPABASE) == 2  # SUPABASE_URL and SUPABASE_SERVICE_KEY were set


@pytest.fixture(params=["sqlite", "postgres", "supabase"])
def make_store(request, tmp_path):
    """A factory of (unopened) adapters over one fresh database of the given kind."""
    kind = request.param
    if kind == "sqlite":
        yield lambda: SqliteDatabase(tmp_path / "veena.db")
    elif kind == "postgres":
        dsn = request.getfixturevalue("pg_dsn")
        yield lambda: PostgresDatabase(dsn, max_size=10)
    else:
        from tests.support.postgrest import FakePostgrest

        dsn = request.getfixturevalue("pg_dsn")
        run(lambda: PostgresDatabase(dsn), _noop)  # the schema, as `veena db migrate` makes it
        fake = FakePostgrest(dsn)
        yield lambda: SupabaseDatabase(fake.url, fake.service_key)
        fake.stop()


async def _noop(store) -> None:
    return None


class TestKeyStore(KeyStoreContract):
    pass


class TestCreditLedger(CreditLedgerContract):
    pass


class TestSentenceStore(SentenceStoreContract):
    pass


class LiveSupabase:
    """The suites against a live project (its data is not ours: ``shared``)."""

    shared = True

    @pytest.fixture
    def make_store(self):
        if not LIVE:
            pytest.skip("live Supabase test: set SUPABASE_URL and SUPABASE_SERVICE_KEY")
        return lambda: SupabaseDatabase(LIVE_SUPABASE["SUPABASE_URL"],
                                        LIVE_SUPABASE["SUPABASE_SERVICE_KEY"])


class TestLiveKeyStore(LiveSupabase, KeyStoreContract):
    pass


class TestLiveCreditLedger(LiveSupabase, CreditLedgerContract):
    pass


class TestLiveSentenceStore(LiveSupabase, SentenceStoreContract):
    pass


class TestMemorySentences(SentenceStoreContract):
    """A store of one interface, as a third party would write it, passes that suite."""

    @pytest.fixture
    def make_store(self):
        data: dict = {}
        return lambda: MemorySentences(data)


def test_a_sentence_only_backend_serves_storage_and_is_refused_for_auth(tmp_path):
    """``backend = "module:factory"`` selects a third party's store; each plugin asks for the
    interface it needs, so a store of sentences only serves ``storage`` and not ``auth``."""
    factory = "tests.support.memory_store:open_memory"
    assert isinstance(open_database(factory, need=SentenceStore), MemorySentences)
    with pytest.raises(ConfigError, match="not a CreditLedger"):
        open_database(factory, need=CreditLedger)
    with pytest.raises(ConfigError, match="cannot be loaded"):
        open_database("tests.support.memory_store:missing", need=SentenceStore)

    async def main():
        async with veena(config(tmp_path, storage={"backend": factory})) as (p, _):
            job, _ = await synthesize(p, "One two three.", request_id="mem-1")
            await p.drain()  # the record reaches the plugins
            writer = p.runtime.state["storage"]
            await writer.queue.flush()
            (row,) = await writer.db.sentences(request_id="mem-1")
            assert (row.id, row.original_text, row.outcome) == \
                (job.record_id, "One two three.", "completed")
    asyncio.run(main())

    from veena.plugins import auth, storage

    for plugin in (auth, storage):
        assert plugin.Config(backend=factory).backend == factory
        with pytest.raises(ValueError, match="package.module:factory"):
            plugin.Config(backend="not a backend")
