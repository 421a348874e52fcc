"""Keys and credits through the real pipeline (in-process, a trivial voice), on SQLite and on a
real PostgreSQL: every rejection, holds, settlement of what was delivered, exactly once."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.fakes import config, info, synthesize, veena
from veena.platform.errors import VeenaError
from veena.plugins.auth.keys import new_key

TWO = "One two three four. Five six seven eight."  # two chunks of 19 and 21 characters


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, monkeypatch):
    if request.param == "postgres":
        monkeypatch.setenv("DATABASE_URL", request.getfixturevalue("pg_dsn"))
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    return request.param


def cfg(tmp_path, **auth):
    # one chunk a sentence: the charging tests count chunks (short text is otherwise one chunk)
    return config(tmp_path, auth=auth, chunk={"min_chars": 0, "short_chars": 0})


async def add_key(pipeline, **kw):
    auth = pipeline.runtime.state["auth"]
    secret, key = new_key(kw.pop("owner", "alice"), **kw)
    await auth.db.create_key(key)
    await auth.cache.refresh()
    return secret, key


async def rejected(pipeline, key=None, header="authorization") -> VeenaError:
    with pytest.raises(VeenaError) as err:
        await pipeline.admit(info(key, header))
    return err.value


async def balance(pipeline, key_id):
    return (await pipeline.runtime.state["auth"].db.get_key(key_id)).credits


async def settled(pipeline):
    await pipeline.drain()
    await pipeline.runtime.state["auth"].settlements.flush()


def test_open_until_a_key_exists_then_every_refusal(backend, tmp_path):
    async def main():
        async with veena(cfg(tmp_path)) as (p, _):
            assert await p.admit(info()) is None  # no key configured: open
            secret, key = await add_key(p)
            err = await rejected(p)
            assert (err.status, err.code) == (401, "missing_api_key")
            assert err.headers["WWW-Authenticate"].startswith("Bearer")
            for bad in ["short", "vk_" + "a" * 40 + " b", "vk_" + "é" * 30]:
                err = await rejected(p, bad)
                assert (err.status, err.code) == (401, "invalid_api_key"), bad
            with pytest.raises(VeenaError) as basic:
                from veena.platform.runtime import RequestInfo

                await p.admit(RequestInfo("POST", "/", {"authorization": "Basic dXNlcjpwYXNz"}, None))
            assert basic.value.code == "invalid_api_key"
            err = await rejected(p, "vk_" + "x" * 43)
            assert (err.status, err.code) == (401, "invalid_api_key")
            assert (await p.admit(info(secret))).key_id == key.id
            assert (await p.admit(info(secret, header="x-api-key"))).key_id == key.id

            expired, _ = await add_key(p, expires_at=time.time() - 1)
            assert (await rejected(p, expired)).code == "expired_api_key"
            no_scope, _ = await add_key(p, scopes=("admin",))
            err = await rejected(p, no_scope)
            assert (err.status, err.code) == (403, "insufficient_scope")
            revoked, rkey = await add_key(p)
            await p.runtime.state["auth"].db.revoke_key(rkey.id)
            await p.runtime.state["auth"].cache.refresh()
            assert (await rejected(p, revoked)).code == "revoked_api_key"
    asyncio.run(main())


def test_revocation_takes_effect_within_one_refresh(backend, tmp_path):
    async def main():
        async with veena(cfg(tmp_path, refresh_seconds=0.2)) as (p, _):
            secret, key = await add_key(p)
            assert (await p.admit(info(secret))).key_id == key.id
            await p.runtime.state["auth"].db.revoke_key(key.id)  # as `veena keys revoke` does
            await asyncio.sleep(0.5)
            assert (await rejected(p, secret)).code == "revoked_api_key"
    asyncio.run(main())


def test_a_key_created_elsewhere_works_at_once(backend, tmp_path):
    async def main():
        async with veena(cfg(tmp_path)) as (p, _):
            await add_key(p)  # auth on
            auth = p.runtime.state["auth"]
            secret, key = new_key("bob")
            await auth.db.create_key(key)  # not in this process's cache yet
            assert (await p.admit(info(secret))).key_id == key.id
            assert auth.cache.stats["store_lookups"] == 1
            await p.admit(info(secret))
            assert auth.cache.stats["store_lookups"] == 1  # cached now
    asyncio.run(main())


def test_zero_balance_is_402_until_topped_up(backend, tmp_path):
    async def main():
        async with veena(cfg(tmp_path)) as (p, _):
            secret, key = await add_key(p, credits=0)
            err = await rejected(p, secret)
            assert (err.status, err.code) == (402, "insufficient_credits")
            await p.runtime.state["auth"].db.add_credits(key.id, 100)  # `veena keys credit`
            assert (await p.admit(info(secret))).credits == 100  # seen before the next reload
    asyncio.run(main())


def test_completed_request_is_charged_once_for_its_characters(backend, tmp_path):
    async def main():
        async with veena(cfg(tmp_path)) as (p, _):
            secret, key = await add_key(p, credits=1000)
            job, chunks = await synthesize(p, TWO, secret)
            assert job.outcome == "completed" and len(job.chunks) == 2
            assert job.extra_headers["X-Credits-Remaining"] == str(1000 - 40)
            await settled(p)
            assert await balance(p, key.id) == 1000 - 40
            rows = await p.runtime.state["auth"].db.usage(key.id)
            assert len(rows) == 1
            u = rows[0]
            assert (u.chars, u.chars_requested, u.credits, u.held, u.outcome) == \
                (40, 40, 40, 40, "completed")
            assert u.request_id == "req" and u.format == "raw" and u.speaker == "kavya"
            assert u.audio_seconds == pytest.approx(0.08) and u.total_ms > 0
    asyncio.run(main())


def test_disconnect_after_first_chunk_charges_only_what_was_sent(backend, tmp_path):
    async def main():
        async with veena(cfg(tmp_path)) as (p, _):
            secret, key = await add_key(p, credits=1000)
            job, chunks = await synthesize(p, TWO, secret, take=1)
            assert job.outcome == "cancelled" and len(chunks) == 1
            await settled(p)
            assert await balance(p, key.id) == 1000 - len(job.chunks[0])
            (u,) = await p.runtime.state["auth"].db.usage(key.id)
            assert (u.chars, u.credits, u.held, u.outcome) == \
                (len(job.chunks[0]), len(job.chunks[0]), 40, "cancelled")
    asyncio.run(main())


def test_failure_mid_stream_charges_only_what_was_sent(backend, tmp_path):
    async def main():
        async with veena(cfg(tmp_path)) as (p, fakes):
            secret, key = await add_key(p, credits=1000)
            fakes.voice.fail_at = 1
            with pytest.raises(RuntimeError):
                await synthesize(p, TWO, secret)
            await settled(p)
            assert await balance(p, key.id) == 1000 - len("One two three four.")
            (u,) = await p.runtime.state["auth"].db.usage(key.id)
            assert u.outcome == "failed" and u.credits == 19
    asyncio.run(main())


def test_failure_before_any_audio_charges_nothing(backend, tmp_path):
    async def main():
        async with veena(cfg(tmp_path)) as (p, fakes):
            secret, key = await add_key(p, credits=1000)
            fakes.voice.fail_at = 0
            with pytest.raises(RuntimeError):
                await synthesize(p, TWO, secret)
            await settled(p)
            assert await balance(p, key.id) == 1000
            (u,) = await p.runtime.state["auth"].db.usage(key.id)
            assert (u.credits, u.held, u.outcome) == (0, 40, "failed")
    asyncio.run(main())


def test_short_balance_is_refused_before_synthesis(backend, tmp_path):
    async def main():
        async with veena(cfg(tmp_path)) as (p, _):
            secret, key = await add_key(p, credits=30)
            with pytest.raises(VeenaError) as err:
                await synthesize(p, TWO, secret)
            assert (err.value.status, err.value.code) == (402, "insufficient_credits")
            assert err.value.details["required"] == 40 and err.value.details["balance"] == 30
            await settled(p)
            assert await balance(p, key.id) == 30
            assert await p.runtime.state["auth"].db.usage(key.id) == []
    asyncio.run(main())


def test_parallel_requests_never_overspend(backend, tmp_path):
    async def main():
        async with veena(cfg(tmp_path)) as (p, fakes):
            fakes.voice.delay = 0.01  # all requests overlap
            secret, key = await add_key(p, credits=100, max_streams=50)
            results = await asyncio.gather(
                *[synthesize(p, TWO, secret, request_id=f"r{i}") for i in range(12)],
                return_exceptions=True)
            served = [r for r in results if not isinstance(r, BaseException)]
            refused = [r for r in results if isinstance(r, VeenaError)]
            assert len(served) == 2 and len(refused) == 10  # 2 * 40 <= 100 < 3 * 40
            assert all(r.code == "insufficient_credits" for r in refused)
            await settled(p)
            assert await balance(p, key.id) == 20
            rows = await p.runtime.state["auth"].db.usage(key.id)
            assert sum(u.credits for u in rows) == 80 and len(rows) == 2
    asyncio.run(main())


def test_same_request_id_twice_settles_each_request_once(backend, tmp_path):
    async def main():
        async with veena(cfg(tmp_path)) as (p, fakes):
            fakes.voice.delay = 0.005
            secret, key = await add_key(p, credits=1000)
            (j1, _), (j2, _) = await asyncio.gather(
                synthesize(p, TWO, secret, request_id="dup"),
                synthesize(p, TWO, secret, request_id="dup", take=1))
            await settled(p)
            rows = await p.runtime.state["auth"].db.usage(key.id)
            assert sorted(u.credits for u in rows) == [19, 40]
            assert await balance(p, key.id) == 1000 - 59
    asyncio.run(main())


def test_unmetered_keys_get_usage_rows_without_charge(backend, tmp_path):
    async def main():
        async with veena(cfg(tmp_path)) as (p, _):
            secret, key = await add_key(p)
            job, _ = await synthesize(p, TWO, secret)
            await settled(p)
            (u,) = await p.runtime.state["auth"].db.usage(key.id)
            assert (u.chars, u.credits, u.held) == (40, 0, 0)
            assert "X-Credits-Remaining" not in job.extra_headers
    asyncio.run(main())


def test_one_record_is_the_sentence_row_and_the_source_of_the_usage_row(backend, tmp_path):
    """The finished request's record is stored as it is and its usage row is made from it:
    the same id, request and figures on both sides, metered or not."""
    async def main():
        async with veena(cfg(tmp_path)) as (p, _):
            free_secret, free = await add_key(p)
            metered_secret, metered = await add_key(p, credits=1000)
            free_job, _ = await synthesize(p, TWO, free_secret, request_id="same")
            paid_job, _ = await synthesize(p, TWO, metered_secret, request_id="same", take=1)
            await settled(p)
            store = p.runtime.state["storage"]
            await store.queue.flush()
            rows = {r.id: r for r in await store.db.sentences(request_id="same")}
            assert set(rows) == {free_job.record_id, paid_job.record_id}
            db = p.runtime.state["auth"].db
            (u_free,) = await db.usage(free.id)
            (u_paid,) = await db.usage(metered.id)
            assert u_free.id == "u_" + free_job.record_id
            for usage, job in ((u_free, free_job), (u_paid, paid_job)):
                row = rows[job.record_id]
                assert row.key_id == usage.key_id
                assert (usage.request_id, usage.chars, usage.chars_requested, usage.outcome,
                        usage.audio_seconds, usage.total_ms) == \
                    (row.request_id, row.chars_delivered, row.chars_requested, row.outcome,
                     row.audio_seconds, row.total_ms)
                assert abs(usage.created_at - row.created_at) < 1e-6
            assert (u_paid.chars, u_paid.credits, rows[paid_job.record_id].outcome) == \
                (19, 19, "cancelled")
            assert p.runtime.state["auth"].inflight == {}
    asyncio.run(main())


def test_a_hold_whose_record_never_came_is_given_back(backend, tmp_path):
    """A held request whose record never arrives (a hook that lost it) is dropped a lease after
    it finished, so the store gives its hold back, while a running request's hold is renewed."""
    from veena.platform.schemas import GenerateRequest
    from veena.plugins.auth import Hold, InFlight

    async def main():
        async with veena(cfg(tmp_path, hold_lease_seconds=4)) as (p, _):
            secret, key = await add_key(p, credits=100)
            auth = p.runtime.state["auth"]
            principal = await p.admit(info(secret))
            lost, running = (p.prepare(GenerateRequest(text=TWO), rid, principal)
                             for rid in ("lost", "running"))
            for job, amount in ((lost, 30), (running, 20)):
                hold = Hold("h_" + job.request_id, key.id, amount)
                hold.task = asyncio.ensure_future(
                    auth.db.reserve(key.id, hold.id, amount, job.request_id))
                assert (await hold.task).ok
                auth.inflight[job.record_id] = InFlight(job, hold)
            lost.timings.finished = time.perf_counter() - 5  # finished a lease ago
            assert auth.inflight[lost.record_id].lapsed(4)
            assert not auth.inflight[running.record_id].lapsed(4)
            deadline = time.monotonic() + 15
            while await balance(p, key.id) != 80 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert await balance(p, key.id) == 80  # the lost 30 back, the running 20 held
            assert set(auth.inflight) == {running.record_id}
            auth.inflight.clear()
    asyncio.run(main())


def test_credit_rule_is_configurable(backend, tmp_path):
    async def main():
        rule = {"per_char": 0.5, "per_request": 3, "per_audio_second": 10}
        async with veena(cfg(tmp_path, credits=rule)) as (p, _):
            secret, key = await add_key(p, credits=1000)
            job, _ = await synthesize(p, TWO, secret)
            await settled(p)
            (u,) = await p.runtime.state["auth"].db.usage(key.id)
            # 3 + 0.5 * 40 + 10 * 0.08 s = 23.8 -> 24; hold: 3 + 20 + 10 * 40 * 0.2 = 103
            assert (u.credits, u.held) == (24, 103)
            assert await balance(p, key.id) == 1000 - 24
    asyncio.run(main())


def test_mode_off_and_required(backend, tmp_path):
    async def main():
        async with veena(cfg(tmp_path, mode="required")) as (p, _):
            assert (await rejected(p)).code == "missing_api_key"  # even with no key at all
        async with veena(cfg(tmp_path, mode="off")) as (p, _):
            assert p.runtime.state["auth"].enforced is False
            assert await p.admit(info("vk_whatever-this-is-not-checked")) is None
    asyncio.run(main())


def test_unreachable_store_fails_closed_with_503(tmp_path, monkeypatch):
    from tests.support.services import free_port

    monkeypatch.setenv("DATABASE_URL", f"postgresql://veena@127.0.0.1:{free_port()}/none")
    monkeypatch.delenv("REDIS_URL", raising=False)

    async def main():
        async with veena(cfg(tmp_path)) as (p, _):
            assert p.runtime.state["auth"].enforced  # unknown: never open
            err = await rejected(p)
            assert (err.status, err.code) == (503, "auth_unavailable")
            assert err.headers["Retry-After"] == "5"
    asyncio.run(main())
