"""Rate limits per API key: requests per minute and concurrent streams.

Shared across processes and containers through Redis when ``REDIS_URL`` is set; otherwise (or
while Redis does not answer) each process limits on its own and says so in its log. While
Redis answers, each process mirrors the shared state of the keys it sees into its own limiter,
so a Redis outage continues from there (not from a fresh quota), and each check sends that view
as a floor, so a restarted, empty Redis cannot grant a fresh quota either. Limits come
from the key (``rate_per_minute``, ``max_streams``) or else from ``[plugins.ratelimit]``; 0 means
unlimited. Anonymous requests (authentication off) are not limited.

- ``veena_authenticate`` (wrapper): after a key is admitted, counts the request; over the
  limit: 429 ``rate_limited`` with ``Retry-After`` and ``RateLimit-*`` headers.
- ``veena_synthesize`` (wrapper, outermost): takes a stream slot before synthesis starts (429
  ``too_many_streams`` when all are in use) and gives it back when the stream ends for any
  reason; a slot whose process died expires after ``stream_lease_seconds``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import msgspec

from veena.platform.audio import PCM
from veena.platform.errors import VeenaError
from veena.platform.hookspecs import hookimpl
from veena.platform.ids import new_id
from veena.platform.job import Job, Principal
from veena.platform.runtime import RequestInfo, Runtime
from veena.plugins.ratelimit.limiter import MemoryLimiter, RateResult, RedisLimiter

log = logging.getLogger("veena.ratelimit")
NAME = "ratelimit"
REDIS_BACKOFF_S = 5.0


class Config(msgspec.Struct, forbid_unknown_fields=True):
    """``[plugins.ratelimit]``."""

    requests_per_minute: int = 120
    """For keys without their own limit; 0: unlimited."""
    concurrent_streams: int = 8
    """For keys without their own limit; 0: unlimited."""
    stream_lease_seconds: float = 300.0
    """A stream slot expires unless renewed within this (live streams renew it)."""
    key_prefix: str = "veena:rl:"
    redis_timeout_seconds: float = 0.5

    def __post_init__(self) -> None:
        if self.requests_per_minute < 0 or self.concurrent_streams < 0:
            raise ValueError("limits must not be negative")
        if self.stream_lease_seconds <= 0:
            raise ValueError("stream_lease_seconds must be positive")


class RateLimits:
    """This process's limiter (``runtime.find(RateLimits)``)."""

    def __init__(self, config: Config, shared: RedisLimiter | None) -> None:
        self.config = config
        self.shared = shared
        self.local = MemoryLimiter()
        self.stats = {"limited": 0, "streams_refused": 0, "redis_errors": 0}
        self._last_error_log = 0.0
        self._redis_retry_at = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def backend(self) -> str:
        return "redis" if self.shared is not None else "memory"

    async def _call(self, method: str, *args: Any) -> tuple[Any, Any]:
        """(result, limiter that answered): Redis when configured and answering, else this
        process's limiter. After a Redis error, Redis is left alone for ``REDIS_BACKOFF_S``
        so a dead or black-holed Redis costs one timeout, not one per request."""
        if self.shared is not None and time.monotonic() >= self._redis_retry_at:
            try:
                return await getattr(self.shared, method)(*args), self.shared
            except Exception as exc:  # noqa: BLE001 - degrade, never fail a request on Redis
                self._redis_failed(exc)
        return await getattr(self.local, method)(*args), self.local

    async def _hit(self, key: str, limit: int) -> RateResult:
        """A rate check on Redis with this process's view as its floor, mirrored back into the
        local limiter; on the local limiter alone while Redis does not answer."""
        if self.shared is not None and time.monotonic() >= self._redis_retry_at:
            try:
                result = await self.shared.hit(key, limit, self.local.ahead_ms(key))
                self.local.sync(key, result.ahead_ms)
                return result
            except Exception as exc:  # noqa: BLE001 - degrade, never fail a request on Redis
                self._redis_failed(exc)
        return await self.local.hit(key, limit)

    def _redis_failed(self, exc: BaseException) -> None:
        self.stats["redis_errors"] += 1
        now = time.monotonic()
        self._redis_retry_at = now + REDIS_BACKOFF_S
        if now - self._last_error_log > 30:
            self._last_error_log = now
            log.warning("Redis unavailable, limiting per process: %r", exc)

    async def _on(self, limiter: Any, method: str, *args: Any) -> None:
        """Renew or release on the limiter that holds the lease; errors only logged."""
        try:
            await getattr(limiter, method)(*args)
        except Exception as exc:  # noqa: BLE001 - the lease expires by itself
            self._redis_failed(exc)

    @staticmethod
    def _limit(value: int | None, default: int) -> int:
        return default if value is None else int(value)

    # --- requests per minute --------------------------------------------------------------
    async def admit(self, results: list[Any]) -> Principal | None:
        """Resolves the authentication results like the pipeline does (first Principal wins)
        and counts the request against that key's rate."""
        principal = None
        pending = list(results)
        try:
            while pending:
                result = pending.pop(0)
                if inspect.isawaitable(result):
                    result = await result
                if result is not None:
                    principal = result
                    break
        finally:
            for left in pending:  # not needed: don't leave them un-awaited
                if inspect.iscoroutine(left):
                    left.close()
        if principal is None or principal.key_id is None:
            return principal
        limit = self._limit(principal.rate_per_minute, self.config.requests_per_minute)
        if limit <= 0:
            return principal
        result = await self._hit(principal.key_id, limit)
        if not result.allowed:
            self.stats["limited"] += 1
            raise VeenaError("rate_limited",
                             f"rate limit of {limit} requests a minute reached; retry in "
                             f"{max(1, result.retry_after_s)} s", 429, headers=result.headers(),
                             limit=limit, retry_after_s=max(1, result.retry_after_s))
        principal.headers.update(result.headers())
        return principal

    # --- concurrent streams -------------------------------------------------------------------
    async def slot(self, stream: AsyncIterator[PCM], job: Job) -> AsyncIterator[PCM]:
        """Holds a stream slot for as long as ``stream`` runs."""
        principal = job.principal
        assert principal is not None and principal.key_id is not None
        key, ttl = principal.key_id, self.config.stream_lease_seconds
        limit = self._limit(principal.max_streams, self.config.concurrent_streams)
        job.extra_headers.update(principal.headers)
        async with aclosing(stream):
            if limit <= 0:
                async for block in stream:
                    yield block
                return
            lease = new_id()
            (ok, active), limiter = await self._call("acquire", key, limit, lease, ttl)
            if not ok:
                self.stats["streams_refused"] += 1
                raise VeenaError("too_many_streams",
                                 f"this key already has {active} of {limit} concurrent streams "
                                 "open", 429,
                                 headers={**principal.headers, "Retry-After": "1"},
                                 limit=limit, active=active)
            renewed = time.monotonic()
            try:
                async for block in stream:
                    if time.monotonic() - renewed > ttl / 3:
                        renewed = time.monotonic()
                        self._background(self._on(limiter, "renew", key, lease, ttl))
                    yield block
            finally:
                # Off this task: the stream may be ending because its task was cancelled.
                self._background(self._on(limiter, "release", key, lease))

    def _background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self.shared is not None:
            await self.shared.close()


def _limits(runtime: Runtime) -> RateLimits | None:
    return runtime.find(RateLimits)


@hookimpl
def veena_startup(runtime: Runtime):
    cfg: Config = runtime.plugin_config(NAME) or Config()
    url = os.environ.get("REDIS_URL")
    shared = None
    if url:
        try:
            shared = RedisLimiter(url, cfg.key_prefix, cfg.redis_timeout_seconds)
        except ImportError:
            log.warning("REDIS_URL is set but the `redis` package is missing: limiting per process")
    limits = runtime.publish(RateLimits(cfg, shared))
    telemetry = runtime.telemetry
    telemetry.gauge("veena_ratelimit", "requests refused (limited, streams_refused) and "
                    "Redis errors since start",
                    lambda: {(("counter", k),): float(v) for k, v in limits.stats.items()})
    return _announce(limits)


async def _announce(limits: RateLimits) -> None:
    if limits.shared is not None:
        try:
            await limits.shared.ping()
            log.info("rate limits shared through Redis")
            return
        except Exception as exc:  # noqa: BLE001
            log.warning("Redis does not answer (%r): limiting per process until it does", exc)
            return
    log.warning("no REDIS_URL: rate limits apply per process, not across processes")


@hookimpl
def veena_shutdown(runtime: Runtime):
    limits = _limits(runtime)
    return limits.close() if limits is not None else None


@hookimpl(wrapper=True)
def veena_authenticate(request: RequestInfo, runtime: Runtime):
    results = yield
    limits = _limits(runtime)
    if limits is None:
        return results
    return [limits.admit(results)]


@hookimpl(wrapper=True, tryfirst=True)
def veena_synthesize(job: Job, runtime: Runtime):
    stream = yield
    limits = _limits(runtime)
    p = job.principal
    if stream is None or limits is None or p is None or p.key_id is None:
        return stream
    return limits.slot(stream, job)
