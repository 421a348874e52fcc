"""Issue 14.5: a Redis outage, and a restarted empty Redis, do not grant a fresh quota. One
process hammers one key at 30 a minute through both, against a real redis-server."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.services import Redis
from veena.platform.errors import VeenaError
from veena.platform.job import Principal
from veena.plugins import ratelimit
from veena.plugins.ratelimit.limiter import RedisLimiter

RPM = 30


@pytest.fixture
def private_redis():
    srv = Redis()
    yield srv
    srv.stop()


async def allowed(limits, seconds: float, per_second: float = 20.0) -> int:
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            await limits.admit([Principal(key_id="key_failover", rate_per_minute=RPM)])
            n += 1
        except VeenaError as exc:
            assert exc.code == "rate_limited"
        await asyncio.sleep(1 / per_second)
    return n


def test_outage_and_empty_restart_continue_from_the_last_view(private_redis, monkeypatch):
    monkeypatch.setattr(ratelimit, "REDIS_BACKOFF_S", 0.5)
    cfg = ratelimit.Config(redis_timeout_seconds=0.2)

    async def main():
        limits = ratelimit.RateLimits(cfg, RedisLimiter(private_redis.url, cfg.key_prefix, 0.2))
        try:
            first = await allowed(limits, 2.0)  # the burst: the whole minute's quota
            assert RPM <= first <= RPM + 2
            private_redis.stop()
            during = await allowed(limits, 3.0)  # per process now, from the last view
            private_redis.start()  # empty
            after = await allowed(limits, 3.0)
            assert limits.stats["redis_errors"] > 0
            # 8 s at one request per 2 s: about 4 more, never a second or third burst
            print(f"\nallowed: {first} burst, {during} during the outage, {after} after an "
                  "empty restart")
            assert during + after <= 6, (during, after)
            assert private_redis.command("EXISTS", f"{cfg.key_prefix}key_failover:rpm") == ":1"
        finally:
            await limits.close()
    asyncio.run(main())
