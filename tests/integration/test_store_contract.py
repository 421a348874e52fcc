"""One contract, every key store: SQLite, PostgreSQL (asyncpg), Supabase (the real client
against a PostgREST look-alike backed by PostgreSQL) and, when SUPABASE_URL and
SUPABASE_SERVICE_KEY are set, a live Supabase project."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from veena.platform.db import ApiKey, SentenceRow, UsageRow
from veena.platform.db.postgres import PostgresDatabase
from veena.platform.db.sqlite import SqliteDatabase
from veena.platform.db.supabase import SupabaseDatabase
from veena.plugins.auth.keys import hash_key, new_key

from tests.conftest import LIVE_SUPABASE

LIVE = len(LIVE_SUPABASE) == 2  # SUPABASE_URL and SUPABASE_SERVICE_KEY were set


@pytest.fixture(params=["sqlite", "postgres", "supabase", "supabase-live"])
def make_db(request, tmp_path):
    """A factory of (unopened) adapters over one fresh database of the given kind."""
    kind = request.param
    if kind == "sqlite":
        yield lambda: SqliteDatabase(tmp_path / "veena.db")
    elif kind == "postgres":
        dsn = request.getfixturevalue("pg_dsn")
        yield lambda: PostgresDatabase(dsn, max_size=10)
    elif kind == "supabase":
        from tests.support.postgrest import FakePostgrest

        dsn = request.getfixturevalue("pg_dsn")
        asyncio.run(_migrate(PostgresDatabase(dsn)))
        fake = FakePostgrest(dsn)
        request.node.fake_postgrest = fake
        yield lambda: SupabaseDatabase(fake.url, fake.service_key)
        fake.stop()
    else:
        if not LIVE:
            pytest.skip("live Supabase test: set SUPABASE_URL and SUPABASE_SERVICE_KEY")
        yield lambda: SupabaseDatabase(LIVE_SUPABASE["SUPABASE_URL"],
                                       LIVE_SUPABASE["SUPABASE_SERVICE_KEY"])


async def _migrate(db):
    await db.open()
    try:
        await db.migrate()
    finally:
        await db.close()


def run(make_db, body):
    """Opens a fresh adapter, migrates, runs ``body(db)`` and closes, in one event loop."""
    async def main():
        db = make_db()
        await db.open()
        try:
            if db.name != "supabase":
                await db.migrate()
            return await body(db)
        finally:
            await db.close()
    return asyncio.run(main())


def owner() -> str:
    return "veena-test-" + uuid.uuid4().hex[:8]


def usage_row(hold_id, key_id, credits, held, **kw) -> UsageRow:
    base = dict(id=hold_id, key_id=key_id, request_id="r-" + hold_id, created_at=time.time(),
                chars=12, chars_requested=40, audio_seconds=1.5, format="wav", speaker="kavya",
                synthesizer="espeak", stream=True, outcome="cancelled", ttfb_ms=12.5,
                total_ms=80.0, credits=credits, held=held)
    return UsageRow(**{**base, **kw})


def test_migrations_apply_once(make_db):
    async def body(db):
        if db.name == "supabase":
            assert await db.migrate() == []  # checks the tables exist
        else:
            assert await db.migrate() == []  # run() applied them already
    run(make_db, body)


def test_keys_round_trip(make_db):
    async def body(db):
        who = owner()
        expires = time.time() + 3600
        secret, key = new_key(who, name="app", scopes=("tts", "admin"), expires_at=expires,
                              credits=50, rate_per_minute=7, max_streams=2)
        await db.create_key(key)
        _, other = new_key(who)
        await db.create_key(other)
        _, stranger = new_key(owner())
        await db.create_key(stranger)

        got = await db.key_by_hash(hash_key(secret))
        assert got is not None and got.id == key.id and got.owner == who and got.name == "app"
        assert got.scopes == ("tts", "admin") and got.credits == 50
        assert got.rate_per_minute == 7 and got.max_streams == 2 and not got.revoked
        assert abs(got.expires_at - expires) < 0.01 and abs(got.created_at - key.created_at) < 0.01
        assert got.key_hash == key.key_hash and got.prefix == secret[:8]
        assert (await db.get_key(other.id)).credits is None
        assert await db.key_by_hash(hash_key("vk_not-a-key-that-exists-anywhere")) is None
        assert await db.get_key("key_missing") is None
        assert [k.id for k in await db.list_keys(who)] == [key.id, other.id]
        assert {key.id, other.id, stranger.id} <= {k.id for k in await db.list_keys()}
    run(make_db, body)


def test_secret_is_never_stored(make_db):
    async def body(db):
        secret, key = new_key(owner())
        await db.create_key(key)
        stored = await db.get_key(key.id)
        assert secret not in repr(stored) and stored.key_hash == hash_key(secret)
    run(make_db, body)


def test_revoke(make_db):
    async def body(db):
        _, key = new_key(owner())
        await db.create_key(key)
        assert await db.revoke_key(key.id) is True
        assert (await db.get_key(key.id)).revoked
        assert await db.revoke_key(key.id) is True  # idempotent
        assert await db.revoke_key("key_missing") is False
    run(make_db, body)


def test_key_version_moves_on_key_changes_not_on_credit_use(make_db):
    async def body(db):
        other = make_db()  # another process's connection (SQLite: data_version moves)
        await other.open()
        try:
            v0 = await db.key_version()
            _, key = new_key(owner(), credits=50)
            await other.create_key(key)
            v1 = await db.key_version()
            assert v1 != v0
            assert (await other.reserve(key.id, "h_v_" + uuid.uuid4().hex[:6], 5, "r")).ok
            await other.add_credits(key.id, 3)
            assert await db.key_version() == v1  # credit use is not a key change
            await other.revoke_key(key.id)
            v2 = await db.key_version()
            assert v2 != v1
            _, mine = new_key(owner())
            await db.create_key(mine)  # its own write too
            assert await db.key_version() != v2
        finally:
            await other.close()
    run(make_db, body)


def test_add_credits(make_db):
    async def body(db):
        _, key = new_key(owner())  # unmetered
        await db.create_key(key)
        assert await db.add_credits(key.id, 30) == 30
        assert await db.add_credits(key.id, -10) == 20
        with pytest.raises(ValueError):
            await db.add_credits(key.id, -21)
        assert (await db.get_key(key.id)).credits == 20
        assert await db.add_credits("key_missing", 5) is None
    run(make_db, body)


def test_reserve_and_settle(make_db):
    async def body(db):
        _, key = new_key(owner(), credits=100)
        await db.create_key(key)
        res = await db.reserve(key.id, "h_1", 40, "req-1")
        assert res.ok and res.balance == 60
        refused = await db.reserve(key.id, "h_2", 61, "req-2")
        assert not refused.ok and refused.balance == 60
        assert (await db.get_key(key.id)).credits == 60
        # Delivered 12 of 40 characters: 12 charged, 28 given back.
        assert await db.settle(usage_row("h_1", key.id, credits=12, held=40)) == 88
        assert (await db.get_key(key.id)).credits == 88
        # Settling again (a replayed spool) changes nothing.
        assert await db.settle(usage_row("h_1", key.id, credits=12, held=40)) is None
        assert (await db.get_key(key.id)).credits == 88
        rows = await db.usage(key.id)
        assert len(rows) == 1
        u = rows[0]
        assert (u.id, u.request_id, u.chars, u.chars_requested, u.credits, u.held) == \
            ("h_1", "r-h_1", 12, 40, 12, 40)
        assert (u.format, u.speaker, u.synthesizer, u.stream, u.outcome) == \
            ("wav", "kavya", "espeak", True, "cancelled")
        assert u.audio_seconds == 1.5 and u.ttfb_ms == 12.5 and u.total_ms == 80.0
    run(make_db, body)


def test_charge_never_exceeds_hold(make_db):
    async def body(db):
        _, key = new_key(owner(), credits=10)
        await db.create_key(key)
        assert (await db.reserve(key.id, "h_x", 10, "r")).ok
        assert await db.settle(usage_row("h_x", key.id, credits=10, held=10)) == 0
        assert (await db.get_key(key.id)).credits == 0
        assert not (await db.reserve(key.id, "h_y", 1, "r")).ok
    run(make_db, body)


def test_unmetered_keys_and_unknown_keys(make_db):
    async def body(db):
        _, key = new_key(owner())
        await db.create_key(key)
        res = await db.reserve(key.id, "h_u", 1000, "r")
        assert res.ok and res.balance is None
        assert await db.settle(usage_row("h_u", key.id, credits=5, held=1000)) is None
        assert (await db.get_key(key.id)).credits is None
        # usage without any hold (unmetered bookkeeping)
        await db.settle(usage_row("u_1", key.id, credits=0, held=0))
        assert {u.id for u in await db.usage(key.id)} == {"h_u", "u_1"}
        assert not (await db.reserve("key_missing", "h_m", 1, "r")).ok
    run(make_db, body)


def test_parallel_holds_never_overspend(make_db):
    async def body(db):
        _, key = new_key(owner(), credits=100)
        await db.create_key(key)
        results = await asyncio.gather(*[db.reserve(key.id, f"h_{i}", 7, f"r{i}")
                                         for i in range(40)])
        ok = [r for r in results if r.ok]
        assert len(ok) == 14  # 14 * 7 = 98 <= 100 < 15 * 7
        assert (await db.get_key(key.id)).credits == 2
        assert min(r.balance for r in ok) == 2
    run(make_db, body)


def test_stale_holds_are_given_back(make_db, request):
    if "live" in request.node.callspec.id:
        pytest.skip("would give back every hold of the live project")

    async def body(db):
        _, key = new_key(owner(), credits=50)
        await db.create_key(key)
        assert (await db.reserve(key.id, "h_s", 20, "r")).ok
        assert await db.release_stale_holds(3600) == 0
        await asyncio.sleep(0.05)
        assert await db.release_stale_holds(0.01) >= 1
        assert (await db.get_key(key.id)).credits == 50
    run(make_db, body)


def test_a_renewed_hold_is_kept_and_an_abandoned_one_given_back(make_db, request):
    """Holds carry a lease: a live stream renews it; a dead process's hold lapses."""
    if "live" in request.node.callspec.id:
        pytest.skip("would give back every hold of the live project")

    async def body(db):
        _, key = new_key(owner(), credits=100)
        await db.create_key(key)
        live, dead = "h_live_" + uuid.uuid4().hex[:8], "h_dead_" + uuid.uuid4().hex[:8]
        assert (await db.reserve(key.id, live, 30, "r1")).ok
        assert (await db.reserve(key.id, dead, 20, "r2")).ok
        await asyncio.sleep(1.2)
        assert await db.renew_holds([live, "h_missing"]) == 1
        assert await db.renew_holds([]) == 0
        assert await db.release_stale_holds(1.0) >= 1  # the dead one (others' too, maybe)
        assert (await db.get_key(key.id)).credits == 70  # 30 still held for the live stream
        await db.settle(usage_row(live, key.id, credits=10, held=30))
        assert (await db.get_key(key.id)).credits == 90
    run(make_db, body)


def sentence(**kw) -> SentenceRow:
    base = dict(id=uuid.uuid4().hex, request_id="req-" + uuid.uuid4().hex[:6], key_id=None,
                created_at=time.time(), original_text="नमस्ते! Dr. Rao paid ₹1,250.",
                normalized_text="नमस्ते! Doctor Rao paid rupees one thousand two hundred fifty.",
                speaker="kavya", synthesizer="espeak", format="mp3", sample_rate=24000,
                stream=True, chunks=2, chars_requested=60, chars_delivered=60,
                audio_seconds=3.25, bytes_sent=40000, ttfb_ms=45.0, total_ms=300.0,
                outcome="completed", error_code=None)
    return SentenceRow(**{**base, **kw})


def test_sentences_round_trip_and_replay_is_idempotent(make_db):
    async def body(db):
        rows = [sentence(), sentence(key_id="key_abc", outcome="failed", error_code="x",
                                     ttfb_ms=None, stream=False)]
        before = await db.count_sentences()
        await db.write_sentences(rows)
        await db.write_sentences(rows)  # a replay after a half-done batch
        assert await db.count_sentences() == before + 2
        for row in rows:
            got = await db.sentences(request_id=row.request_id)
            assert len(got) == 1
            g = got[0]
            assert abs(g.created_at - row.created_at) < 0.01
            assert msgspec_dict(g, "created_at") == msgspec_dict(row, "created_at")
    run(make_db, body)


def msgspec_dict(row, *skip):
    import msgspec

    return {k: v for k, v in msgspec.structs.asdict(row).items() if k not in skip}


# Texts a backend may be unable to hold as they are (PostgreSQL refuses U+0000 in text and
# jsonb), the escape character itself, and look-alikes of the escape sequences.
AWKWARD_TEXTS = ["before\u0000after", "\u0000", "\u0000\u0000x\u0000", "a\u2400b",
                 "\u24000 is not NUL", "\u2400\u2400", "\u2400", "tail\u2400",
                 "back\\slash \\u0000 literal", "ok \U0001F600 \u200d"]


@pytest.mark.parametrize("text", AWKWARD_TEXTS)
def test_every_text_is_stored_exactly_as_sent(make_db, text):
    async def body(db):
        row = sentence(original_text=text, normalized_text=text + " n", error_code=text[:8])
        neighbour = sentence()  # same batch: must land too
        await db.write_sentences([neighbour, row])
        got = await db.sentences(request_id=row.request_id)
        assert len(got) == 1
        assert got[0].original_text == text and got[0].normalized_text == text + " n"
        assert got[0].error_code == text[:8]
        assert len(await db.sentences(request_id=neighbour.request_id)) == 1
    run(make_db, body)
