"""Contract suites for stores: a third party's ``KeyStore``, ``CreditLedger`` or
``SentenceStore`` passes the tests the built-in adapters pass.

Subclass the suite of each interface your store implements and give it a ``make_store``
fixture: a callable returning a fresh, unopened store over one test database (every call a new
connection to the same data, as another process would open it)::

    import pytest
    from veena.testing.stores import SentenceStoreContract

    class TestMySentences(SentenceStoreContract):
        @pytest.fixture
        def make_store(self, tmp_path):
            return lambda: MyStore(tmp_path / "sentences.db")

A ``CreditLedger`` is a ``KeyStore``: run ``KeyStoreContract`` and ``CreditLedgerContract``.
Each test opens a store, migrates it, runs its body and closes the store in one event loop
(``asyncio.run``): no async test plugin is needed. Set ``shared = True`` on a suite whose
database holds data that is not the test's (a live project): tests that act on every row (giving
back all stale holds) are skipped. The built-in adapters run these suites in
``tests/integration/test_store_contract.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import pytest

from veena.platform.db import ApiKey, CreditLedger, KeyStore, SentenceStore, Store, UsageRow
from veena.platform.runtime import RequestRecord

S = TypeVar("S", bound=Store)
T = TypeVar("T")

__all__ = ["AWKWARD_TEXTS", "CreditLedgerContract", "KeyStoreContract", "SentenceStoreContract",
           "StoreContract", "new_test_key", "run", "sentence", "usage_row"]

# Texts a backend may be unable to hold as they are (PostgreSQL refuses U+0000 in text and
# jsonb), the escape character itself, and look-alikes of the escape sequences.
AWKWARD_TEXTS = ["before\u0000after", "\u0000", "\u0000\u0000x\u0000", "a\u2400b",
                 "\u24000 is not NUL", "\u2400\u2400", "\u2400", "tail\u2400",
                 "back\\slash \\u0000 literal", "ok \U0001F600 \u200d"]


def run(make_store: Callable[[], S], body: Callable[[S], Awaitable[T]]) -> T:
    """Opens a fresh store, migrates it, runs ``body(store)`` and closes it, in one loop."""
    async def main() -> T:
        store = make_store()
        await store.open()
        try:
            await store.migrate()
            return await body(store)
        finally:
            await store.close()
    return asyncio.run(main())


def owner() -> str:
    """An owner no other test uses (the database may be shared)."""
    return "veena-test-" + uuid.uuid4().hex[:8]


def new_test_key(who: str, **fields: Any) -> tuple[str, ApiKey]:
    """A (secret, key) pair; the store sees only the key, whose ``key_hash`` is the secret's
    SHA-256 (the hash is the caller's business: any stable string works)."""
    secret = "vk_" + secrets.token_urlsafe(32)
    key = ApiKey(id="key_" + uuid.uuid4().hex[:16], key_hash=hashlib.sha256(secret.encode())
                 .hexdigest(), prefix=secret[:8], owner=who, **fields)
    return secret, key


def usage_row(hold_id: str, key_id: str, credits: int, held: int, **fields: Any) -> UsageRow:
    """The usage row of a request that delivered 12 of 40 characters."""
    base = dict(id=hold_id, key_id=key_id, request_id="r-" + hold_id, created_at=time.time(),
                chars=12, chars_requested=40, audio_seconds=1.5, format="wav", speaker="kavya",
                synthesizer="espeak", stream=True, outcome="cancelled", ttfb_ms=12.5,
                total_ms=80.0, credits=credits, held=held)
    return UsageRow(**{**base, **fields})


def sentence(**fields: Any) -> RequestRecord:
    """A finished request's record with text in two scripts."""
    base = dict(id=uuid.uuid4().hex, request_id="req-" + uuid.uuid4().hex[:6], key_id=None,
                created_at=time.time(), original_text="नमस्ते! Dr. Rao paid ₹1,250.",
                normalized_text="नमस्ते! Doctor Rao paid rupees one thousand two hundred fifty.",
                speaker="kavya", synthesizer="espeak", format="mp3", sample_rate=24000,
                stream=True, chunks=2, chars_requested=60, chars_delivered=60,
                audio_seconds=3.25, bytes_sent=40000, ttfb_ms=45.0, total_ms=300.0,
                outcome="completed", error_code=None)
    return RequestRecord(**{**base, **fields})


def _fields(row: msgspec.Struct, *skip: str) -> dict[str, Any]:
    return {k: v for k, v in msgspec.structs.asdict(row).items() if k not in skip}


class StoreContract:
    """What every store does: migrations apply once."""

    shared = False
    """True when the database holds rows that are not the test's."""
    interface: type[Store] = Store

    def test_is_the_interface(self, make_store: Callable[[], Store]) -> None:
        assert isinstance(make_store(), self.interface)

    def test_migrations_apply_once(self, make_store: Callable[[], Store]) -> None:
        async def body(store: Store) -> None:
            assert await store.migrate() == []  # run() applied them already
            assert isinstance(store.describe(), str)
        run(make_store, body)


class KeyStoreContract(StoreContract):
    """``veena.platform.db.KeyStore``: keys by hash and id, listing, revocation, versions."""

    interface = KeyStore

    def test_keys_round_trip(self, make_store: Callable[[], KeyStore]) -> None:
        async def body(db: KeyStore) -> None:
            who = owner()
            expires = time.time() + 3600
            secret, key = new_test_key(who, name="app", scopes=("tts", "admin"),
                                       expires_at=expires, credits=50, rate_per_minute=7,
                                       max_streams=2)
            await db.create_key(key)
            _, other = new_test_key(who)
            await db.create_key(other)
            _, stranger = new_test_key(owner())
            await db.create_key(stranger)

            got = await db.key_by_hash(key.key_hash)
            assert got is not None and got.id == key.id and got.owner == who
            assert got.name == "app" and got.scopes == ("tts", "admin") and got.credits == 50
            assert got.rate_per_minute == 7 and got.max_streams == 2 and not got.revoked
            assert got.expires_at is not None and abs(got.expires_at - expires) < 0.01
            assert abs(got.created_at - key.created_at) < 0.01
            assert got.key_hash == key.key_hash and got.prefix == secret[:8]
            assert (await db.get_key(other.id)).credits is None  # type: ignore[union-attr]
            assert await db.key_by_hash("0" * 64) is None
            assert await db.get_key("key_missing") is None
            assert [k.id for k in await db.list_keys(who)] == [key.id, other.id]
            assert {key.id, other.id, stranger.id} <= {k.id for k in await db.list_keys()}
        run(make_store, body)

    def test_secret_is_never_stored(self, make_store: Callable[[], KeyStore]) -> None:
        async def body(db: KeyStore) -> None:
            secret, key = new_test_key(owner())
            await db.create_key(key)
            stored = await db.get_key(key.id)
            assert stored is not None and secret not in repr(stored)
            assert stored.key_hash == key.key_hash
        run(make_store, body)

    def test_revoke(self, make_store: Callable[[], KeyStore]) -> None:
        async def body(db: KeyStore) -> None:
            _, key = new_test_key(owner())
            await db.create_key(key)
            assert await db.revoke_key(key.id) is True
            assert (await db.get_key(key.id)).revoked  # type: ignore[union-attr]
            assert await db.revoke_key(key.id) is True  # idempotent
            assert await db.revoke_key("key_missing") is False
        run(make_store, body)

    def test_key_version_moves_on_key_changes(self, make_store: Callable[[], KeyStore]) -> None:
        async def body(db: KeyStore) -> None:
            other = make_store()  # another process's connection
            await other.open()
            try:
                v0 = await db.key_version()
                if v0 is None:
                    pytest.skip("this store has no key_version (the cache reloads on a timer)")
                _, key = new_test_key(owner(), credits=50)
                await other.create_key(key)
                v1 = await db.key_version()
                assert v1 != v0
                await other.revoke_key(key.id)
                v2 = await db.key_version()
                assert v2 != v1
                _, mine = new_test_key(owner())
                await db.create_key(mine)  # its own write too
                assert await db.key_version() != v2
            finally:
                await other.close()
        run(make_store, body)


class CreditLedgerContract(StoreContract):
    """``veena.platform.db.CreditLedger``: balances, atomic holds, settlement exactly once,
    usage rows and hold leases."""

    interface = CreditLedger

    def test_credit_use_is_not_a_key_change(self, make_store: Callable[[], CreditLedger]) -> None:
        async def body(db: CreditLedger) -> None:
            other = make_store()  # another process's connection spends the credits
            await other.open()
            try:
                _, key = new_test_key(owner(), credits=50)
                await db.create_key(key)
                v1 = await db.key_version()
                assert (await other.reserve(key.id, "h_v_" + uuid.uuid4().hex[:8], 5, "r")).ok
                await other.add_credits(key.id, 3)
                assert await db.key_version() == v1
            finally:
                await other.close()
        run(make_store, body)

    def test_add_credits(self, make_store: Callable[[], CreditLedger]) -> None:
        async def body(db: CreditLedger) -> None:
            _, key = new_test_key(owner())  # unmetered
            await db.create_key(key)
            assert await db.add_credits(key.id, 30) == 30
            assert await db.add_credits(key.id, -10) == 20
            with pytest.raises(ValueError):
                await db.add_credits(key.id, -21)
            assert (await db.get_key(key.id)).credits == 20  # type: ignore[union-attr]
            assert await db.add_credits("key_missing", 5) is None
        run(make_store, body)

    def test_reserve_and_settle(self, make_store: Callable[[], CreditLedger]) -> None:
        async def body(db: CreditLedger) -> None:
            _, key = new_test_key(owner(), credits=100)
            await db.create_key(key)
            h1, h2 = "h_1" + uuid.uuid4().hex[:8], "h_2" + uuid.uuid4().hex[:8]
            res = await db.reserve(key.id, h1, 40, "req-1")
            assert res.ok and res.balance == 60
            refused = await db.reserve(key.id, h2, 61, "req-2")
            assert not refused.ok and refused.balance == 60
            assert (await db.get_key(key.id)).credits == 60  # type: ignore[union-attr]
            # Delivered 12 of 40 characters: 12 charged, 28 given back.
            assert await db.settle(usage_row(h1, key.id, credits=12, held=40)) == 88
            assert (await db.get_key(key.id)).credits == 88  # type: ignore[union-attr]
            # Settling again (a replayed spool) changes nothing.
            assert await db.settle(usage_row(h1, key.id, credits=12, held=40)) is None
            assert (await db.get_key(key.id)).credits == 88  # type: ignore[union-attr]
            (u,) = await db.usage(key.id)
            assert (u.id, u.request_id, u.chars, u.chars_requested, u.credits, u.held) == \
                (h1, "r-" + h1, 12, 40, 12, 40)
            assert (u.format, u.speaker, u.synthesizer, u.stream, u.outcome) == \
                ("wav", "kavya", "espeak", True, "cancelled")
            assert u.audio_seconds == 1.5 and u.ttfb_ms == 12.5 and u.total_ms == 80.0
        run(make_store, body)

    def test_charge_never_exceeds_hold(self, make_store: Callable[[], CreditLedger]) -> None:
        async def body(db: CreditLedger) -> None:
            _, key = new_test_key(owner(), credits=10)
            await db.create_key(key)
            hold = "h_x" + uuid.uuid4().hex[:8]
            assert (await db.reserve(key.id, hold, 10, "r")).ok
            assert await db.settle(usage_row(hold, key.id, credits=10, held=10)) == 0
            assert (await db.get_key(key.id)).credits == 0  # type: ignore[union-attr]
            assert not (await db.reserve(key.id, hold + "y", 1, "r")).ok
        run(make_store, body)

    def test_unmetered_keys_and_unknown_keys(self, make_store: Callable[[], CreditLedger]) -> None:
        async def body(db: CreditLedger) -> None:
            _, key = new_test_key(owner())
            await db.create_key(key)
            hold, plain = "h_u" + uuid.uuid4().hex[:8], "u_" + uuid.uuid4().hex[:8]
            res = await db.reserve(key.id, hold, 1000, "r")
            assert res.ok and res.balance is None
            assert await db.settle(usage_row(hold, key.id, credits=5, held=1000)) is None
            assert (await db.get_key(key.id)).credits is None  # type: ignore[union-attr]
            await db.settle(usage_row(plain, key.id, credits=0, held=0))  # no hold behind it
            assert {u.id for u in await db.usage(key.id)} == {hold, plain}
            assert not (await db.reserve("key_missing", hold + "m", 1, "r")).ok
        run(make_store, body)

    def test_parallel_holds_never_overspend(self, make_store: Callable[[], CreditLedger]) -> None:
        async def body(db: CreditLedger) -> None:
            _, key = new_test_key(owner(), credits=100)
            await db.create_key(key)
            tag = uuid.uuid4().hex[:8]
            results = await asyncio.gather(*[db.reserve(key.id, f"h_{tag}_{i}", 7, f"r{i}")
                                             for i in range(40)])
            ok = [r for r in results if r.ok]
            assert len(ok) == 14  # 14 * 7 = 98 <= 100 < 15 * 7
            assert (await db.get_key(key.id)).credits == 2  # type: ignore[union-attr]
            assert min(r.balance for r in ok if r.balance is not None) == 2
        run(make_store, body)

    def test_stale_holds_are_given_back(self, make_store: Callable[[], CreditLedger]) -> None:
        if self.shared:
            pytest.skip("would give back every stale hold of the shared database")

        async def body(db: CreditLedger) -> None:
            _, key = new_test_key(owner(), credits=50)
            await db.create_key(key)
            assert (await db.reserve(key.id, "h_s" + uuid.uuid4().hex[:8], 20, "r")).ok
            assert await db.release_stale_holds(3600) == 0
            await asyncio.sleep(0.05)
            assert await db.release_stale_holds(0.01) >= 1
            assert (await db.get_key(key.id)).credits == 50  # type: ignore[union-attr]
        run(make_store, body)

    def test_a_renewed_hold_is_kept_and_an_abandoned_one_given_back(
            self, make_store: Callable[[], CreditLedger]) -> None:
        """Holds carry a lease: a live stream renews it; a dead process's hold lapses."""
        if self.shared:
            pytest.skip("would give back every stale hold of the shared database")

        async def body(db: CreditLedger) -> None:
            _, key = new_test_key(owner(), credits=100)
            await db.create_key(key)
            live, dead = "h_live_" + uuid.uuid4().hex[:8], "h_dead_" + uuid.uuid4().hex[:8]
            assert (await db.reserve(key.id, live, 30, "r1")).ok
            assert (await db.reserve(key.id, dead, 20, "r2")).ok
            await asyncio.sleep(1.2)
            assert await db.renew_holds([live, "h_missing"]) == 1
            assert await db.renew_holds([]) == 0
            assert await db.release_stale_holds(1.0) >= 1  # the dead one
            assert (await db.get_key(key.id)).credits == 70  # type: ignore[union-attr]
            await db.settle(usage_row(live, key.id, credits=10, held=30))
            assert (await db.get_key(key.id)).credits == 90  # type: ignore[union-attr]
        run(make_store, body)


class SentenceStoreContract(StoreContract):
    """``veena.platform.db.SentenceStore``: records kept exactly as sent, a replay a no-op."""

    interface = SentenceStore

    def test_sentences_round_trip_and_replay_is_idempotent(
            self, make_store: Callable[[], SentenceStore]) -> None:
        async def body(db: SentenceStore) -> None:
            rows = [sentence(), sentence(key_id="key_abc", outcome="failed", error_code="x",
                                         ttfb_ms=None, stream=False)]
            before = await db.count_sentences()
            await db.write_sentences(rows)
            await db.write_sentences(rows)  # a replay after a half-done batch
            assert await db.count_sentences() == before + 2
            for row in rows:
                (got,) = await db.sentences(request_id=row.request_id)
                assert abs(got.created_at - row.created_at) < 0.01
                assert _fields(got, "created_at") == _fields(row, "created_at")
        run(make_store, body)

    def test_newest_first_and_limited(self, make_store: Callable[[], SentenceStore]) -> None:
        async def body(db: SentenceStore) -> None:
            now = time.time() + 1000  # newer than anything else in the database
            rows = [sentence(created_at=now + i) for i in range(3)]
            await db.write_sentences(rows)
            got = await db.sentences(limit=2)
            assert [g.id for g in got] == [rows[2].id, rows[1].id]
        run(make_store, body)

    @pytest.mark.parametrize("text", AWKWARD_TEXTS)
    def test_every_text_is_stored_exactly_as_sent(self, make_store: Callable[[], SentenceStore],
                                                 text: str) -> None:
        async def body(db: SentenceStore) -> None:
            row = sentence(original_text=text, normalized_text=text + " n", error_code=text[:8])
            neighbour = sentence()  # same batch: must land too
            await db.write_sentences([neighbour, row])
            (got,) = await db.sentences(request_id=row.request_id)
            assert got.original_text == text and got.normalized_text == text + " n"
            assert got.error_code == text[:8]
            assert len(await db.sentences(request_id=neighbour.request_id)) == 1
        run(make_store, body)
