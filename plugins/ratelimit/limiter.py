"""Per-key limits: requests per minute (GCRA) and concurrent streams (leases).

Two implementations with the same behaviour: ``RedisLimiter`` (shared by every process that
uses the same Redis; each check is one Lua script, so check-and-count is atomic and timed by
the Redis server's clock) and ``MemoryLimiter`` (one process; the fallback without Redis).

Requests per minute use the generic cell rate algorithm: each key stores one number, the
"theoretical arrival time"; a burst of up to the whole minute's quota is allowed, and the
answer says exactly how long to wait. ``ahead_ms`` (how far the stored time is ahead of now)
is what a process mirrors from Redis into its own limiter after every check, and what it
sends back as a floor, so that neither a Redis outage nor an emptied Redis starts a key from a
fresh quota (see ``RateLimits``). Concurrent streams are leases in a sorted set scored by
expiry, so a process that dies without releasing its leases frees them after
``lease_seconds``; live streams renew theirs.

The ``limits`` library was considered: it has the moving-window counter but no concurrency
leases, which would need their own script anyway, and it spends a round trip per check where
this spends one for check and count together.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

PERIOD_MS = 60_000


@dataclass(frozen=True, slots=True)
class RateResult:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    """Seconds until the full quota is available again."""
    retry_after_s: int
    """Seconds until the next request is allowed (0 when allowed)."""
    ahead_ms: float = 0.0
    """How far the key's stored arrival time is ahead of now after this check."""

    def headers(self) -> dict[str, str]:
        h = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
             "RateLimit-Reset": str(self.reset_s),
             "RateLimit-Policy": f"{self.limit};w=60"}
        if not self.allowed:
            h["Retry-After"] = str(max(1, self.retry_after_s))
        return h


def _gcra(tat: float | None, now: float, limit: int) -> tuple[float | None, RateResult]:
    """One GCRA step in milliseconds: (new stored tat or None when refused, result)."""
    interval = PERIOD_MS / limit
    tat = now if tat is None or tat < now else tat
    new_tat = tat + interval
    allow_at = new_tat - PERIOD_MS
    if now < allow_at:
        return None, RateResult(False, limit, 0, math.ceil((tat - now) / 1000),
                                math.ceil((allow_at - now) / 1000), tat - now)
    remaining = min(int((now - allow_at) // interval), limit - 1)
    return new_tat, RateResult(True, limit, remaining, math.ceil((new_tat - now) / 1000), 0,
                               new_tat - now)


class MemoryLimiter:
    """Limits within this process only."""

    name = "memory"

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._leases: dict[str, dict[str, float]] = {}

    async def hit(self, key: str, limit: int) -> RateResult:
        now = time.monotonic() * 1000
        new_tat, result = _gcra(self._tat.get(key), now, limit)
        if new_tat is not None:
            self._tat[key] = new_tat
        if len(self._tat) > 100_000:  # forget keys that are fully replenished
            self._tat = {k: v for k, v in self._tat.items() if v > now}
        return result

    def ahead_ms(self, key: str) -> float:
        """How far this key's arrival time is ahead of now (0 when fully replenished)."""
        tat = self._tat.get(key)
        return max(0.0, tat - time.monotonic() * 1000) if tat is not None else 0.0

    def sync(self, key: str, ahead_ms: float) -> None:
        """Moves this key's arrival time to at least ``ahead_ms`` from now (the shared view)."""
        if ahead_ms > 0:
            tat = time.monotonic() * 1000 + ahead_ms
            self._tat[key] = max(self._tat.get(key, 0.0), tat)

    async def acquire(self, key: str, limit: int, lease: str, ttl_s: float) -> tuple[bool, int]:
        now = time.monotonic()
        leases = {k: v for k, v in self._leases.get(key, {}).items() if v > now}
        if len(leases) >= limit:
            self._leases[key] = leases
            return False, len(leases)
        leases[lease] = now + ttl_s
        self._leases[key] = leases
        return True, len(leases)

    async def renew(self, key: str, lease: str, ttl_s: float) -> None:
        leases = self._leases.get(key)
        if leases is not None and lease in leases:
            leases[lease] = time.monotonic() + ttl_s

    async def release(self, key: str, lease: str) -> None:
        leases = self._leases.get(key)
        if leases is not None:
            leases.pop(lease, None)
            if not leases:
                del self._leases[key]

    async def close(self) -> None:
        pass


_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local interval = period / limit
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
-- the caller's own view is a floor: an emptied Redis does not grant a fresh quota
local floor = now + tonumber(ARGV[3] or 0)
if tat < floor then tat = floor end
local new_tat = tat + interval
local allow_at = new_tat - period
if now < allow_at then
  if tat > now then
    redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.max(1, math.ceil(tat - now)))
  end
  return {0, 0, math.ceil(tat - now), math.ceil(allow_at - now)}
end
-- at least 1 ms: with a huge limit the interval is below a double's resolution at this size
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))
return {1, math.floor((now - allow_at) / interval), math.ceil(new_tat - now), 0}
"""

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[1]) then return {0, n} end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, n + 1}
"""

_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
if redis.call('ZADD', KEYS[1], 'XX', 'CH', now + ttl, ARGV[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
"""


class RedisLimiter:
    """Limits shared through Redis (``REDIS_URL``)."""

    name = "redis"

    def __init__(self, url: str, prefix: str = "veena:rl:", timeout_s: float = 0.5) -> None:
        import redis.asyncio as redis

        self.prefix = prefix
        self.client: Any = redis.from_url(url, socket_timeout=timeout_s,
                                          socket_connect_timeout=timeout_s)
        self._hit = self.client.register_script(_HIT)
        self._acquire = self.client.register_script(_ACQUIRE)
        self._renew = self.client.register_script(_RENEW)

    async def hit(self, key: str, limit: int, floor_ms: float = 0.0) -> RateResult:
        """One check; ``floor_ms``: the caller's own view of how far ahead the key is."""
        allowed, remaining, reset_ms, retry_ms = await self._hit(
            keys=[f"{self.prefix}{key}:rpm"], args=[limit, PERIOD_MS, int(floor_ms)])
        return RateResult(bool(allowed), limit, min(int(remaining), limit - 1),
                          math.ceil(int(reset_ms) / 1000),
                          math.ceil(int(retry_ms) / 1000), float(reset_ms))

    async def acquire(self, key: str, limit: int, lease: str, ttl_s: float) -> tuple[bool, int]:
        ok, n = await self._acquire(keys=[f"{self.prefix}{key}:streams"],
                                    args=[limit, lease, int(ttl_s * 1000)])
        return bool(ok), int(n)

    async def renew(self, key: str, lease: str, ttl_s: float) -> None:
        await self._renew(keys=[f"{self.prefix}{key}:streams"], args=[lease, int(ttl_s * 1000)])

    async def release(self, key: str, lease: str) -> None:
        await self.client.zrem(f"{self.prefix}{key}:streams", lease)

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()
