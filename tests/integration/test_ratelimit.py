"""Rate limits: the limiter on Redis and in memory (one suite), and through the pipeline."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.fakes import config, info, synthesize, veena
from tests.support.services import free_port
from veena.platform.errors import VeenaError
from veena.plugins.auth.keys import new_key
from veena.plugins.ratelimit import RateLimits
from veena.plugins.ratelimit.limiter import MemoryLimiter, RedisLimiter


@pytest.fixture(params=["memory", "redis"])
def make_limiter(request):
    if request.param == "memory":
        return MemoryLimiter
    url = request.getfixturevalue("redis_url")
    return lambda: RedisLimiter(url)


def test_requests_per_minute(make_limiter):
    async def main():
        limiter = make_limiter()
        results = [await limiter.hit("k1", 5) for _ in range(6)]
        assert [r.allowed for r in results] == [True] * 5 + [False]
        assert [r.remaining for r in results[:5]] == [4, 3, 2, 1, 0]
        denied = results[-1]
        assert 11 <= denied.retry_after_s <= 12  # one request every 12 s refills
        h = denied.headers()
        assert h["Retry-After"] == str(denied.retry_after_s) and h["RateLimit-Limit"] == "5"
        assert h["RateLimit-Remaining"] == "0" and 55 <= int(h["RateLimit-Reset"]) <= 60
        assert (await limiter.hit("k2", 5)).allowed  # keys are independent
        for _ in range(3):  # an interval below the clock's resolution still works
            assert (await limiter.hit("huge", 10**9)).allowed
        await limiter.close()
    asyncio.run(main())


def test_stream_leases(make_limiter):
    async def main():
        limiter = make_limiter()
        assert await limiter.acquire("k", 2, "a", 30) == (True, 1)
        assert await limiter.acquire("k", 2, "b", 30) == (True, 2)
        assert await limiter.acquire("k", 2, "c", 30) == (False, 2)
        await limiter.release("k", "a")
        assert (await limiter.acquire("k", 2, "c", 30))[0]
        # a lease whose process died expires; a renewed one does not
        assert (await limiter.acquire("j", 2, "dead", 0.3))[0]
        assert (await limiter.acquire("j", 2, "live", 0.3))[0]
        await asyncio.sleep(0.2)
        await limiter.renew("j", "live", 0.3)
        await asyncio.sleep(0.2)
        assert await limiter.acquire("j", 2, "new", 30) == (True, 2)
        assert not (await limiter.acquire("j", 2, "more", 30))[0]
        await limiter.close()
    asyncio.run(main())


def test_redis_limits_are_shared_between_limiters(redis_url):
    async def main():
        a, b = RedisLimiter(redis_url), RedisLimiter(redis_url)
        assert (await a.hit("k", 2)).allowed and (await b.hit("k", 2)).allowed
        assert not (await a.hit("k", 2)).allowed and not (await b.hit("k", 2)).allowed
        assert (await a.acquire("k", 1, "x", 30))[0]
        assert not (await b.acquire("k", 1, "y", 30))[0]
        await a.close()
        await b.close()
    asyncio.run(main())


def test_parallel_hits_count_exactly(redis_url):
    async def main():
        limiters = [RedisLimiter(redis_url) for _ in range(4)]
        results = await asyncio.gather(*[limiters[i % 4].hit("burst", 10) for i in range(40)])
        assert sum(r.allowed for r in results) == 10
        for limiter in limiters:
            await limiter.close()
    asyncio.run(main())


# --- through the pipeline --------------------------------------------------------------------

TEXT = "One two three four. Five six seven eight."


async def key(pipeline, **kw):
    auth = pipeline.runtime.state["auth"]
    secret, record = new_key("alice", **kw)
    await auth.db.create_key(record)
    await auth.cache.refresh()
    return secret


@pytest.fixture(params=["memory", "redis"])
def limiter_env(request, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    if request.param == "redis":
        monkeypatch.setenv("REDIS_URL", request.getfixturevalue("redis_url"))
    else:
        monkeypatch.delenv("REDIS_URL", raising=False)
    return request.param


def test_rate_limit_429_with_headers(limiter_env, tmp_path):
    async def main():
        async with veena(config(tmp_path)) as (p, _):
            assert p.runtime.find(RateLimits).backend == limiter_env
            secret = await key(p, rate_per_minute=3)
            for _ in range(3):
                principal = await p.admit(info(secret))
            assert principal.headers["RateLimit-Remaining"] == "0"
            with pytest.raises(VeenaError) as err:
                await p.admit(info(secret))
            e = err.value
            assert (e.status, e.code) == (429, "rate_limited")
            assert int(e.headers["Retry-After"]) >= 19 and e.headers["RateLimit-Limit"] == "3"
            assert e.headers["RateLimit-Remaining"] == "0" and "RateLimit-Reset" in e.headers
            # the default applies to keys without their own limit
            other = await key(p)
            assert (await p.admit(info(other))).headers["RateLimit-Limit"] == "120"
    asyncio.run(main())


def test_concurrent_streams_and_prompt_release(limiter_env, tmp_path):
    async def main():
        async with veena(config(tmp_path)) as (p, fakes):
            secret = await key(p, max_streams=1)
            fakes.voice.delay = 0.05
            first = asyncio.create_task(synthesize(p, TEXT, secret, request_id="a"))
            await asyncio.sleep(0.1)  # streaming now
            with pytest.raises(VeenaError) as err:
                await synthesize(p, TEXT, secret, request_id="b")
            assert (err.value.status, err.value.code) == (429, "too_many_streams")
            assert err.value.headers["Retry-After"] == "1"
            job, _ = await first
            assert job.outcome == "completed"
            await asyncio.sleep(0.05)  # the release runs in the background
            # a client that leaves after the first chunk gives its slot back at once
            job, _ = await synthesize(p, TEXT, secret, take=1)
            assert job.outcome == "cancelled"
            await asyncio.sleep(0.05)
            job, _ = await synthesize(p, TEXT, secret)
            assert job.outcome == "completed"
            assert "RateLimit-Limit" in job.extra_headers
    asyncio.run(main())


def test_redis_down_degrades_to_per_process_limits(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nobody listens

    async def main():
        async with veena(config(tmp_path)) as (p, _):
            secret = await key(p, rate_per_minute=2)
            await p.admit(info(secret))
            await p.admit(info(secret))
            with pytest.raises(VeenaError) as err:
                await p.admit(info(secret))
            assert err.value.code == "rate_limited"
            # one failure, then Redis is left alone for a while: no timeout per request
            assert p.runtime.find(RateLimits).stats["redis_errors"] == 1
    asyncio.run(main())
    assert "limiting per process" in caplog.text
