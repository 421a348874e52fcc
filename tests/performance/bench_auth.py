"""Key validation (cached and miss), credit hold + settle, and sentence storage throughput.

    python tests/performance/bench_auth.py

Runs on SQLite and on a throwaway local PostgreSQL (started here from the PostgreSQL binaries,
like the tests; skipped with a note when they are missing, or uses $BENCH_DATABASE_URL).

- cached: ``Auth.authenticate`` for a key in the process cache (header parse, SHA-256, dict
  lookup, expiry/scope/balance checks, Principal), and the whole ``Pipeline.admit`` fan-out
  with the in-process rate limiter.
- miss: the same for a key the cache does not hold (one store lookup each; the cache is
  reset between calls).
- hold + settle: one credit hold and its settlement (two statements).
- storage: rows per second through the durable queue (batches of 200) into the database.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.fakes import config, info, veena  # noqa: E402
from veena.platform.db import SentenceRow  # noqa: E402
from veena.platform.db.queue import DurableQueue  # noqa: E402
from veena.platform.db import UsageRow  # noqa: E402
from veena.plugins.auth.keys import hash_key, new_key  # noqa: E402


def stats(samples_us: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(samples_us, n=100)
    return statistics.median(samples_us), q[94], q[98]


async def bench_backend(label: str, tmp: Path, rows: int) -> list[tuple[str, str, str]]:
    out = []
    async with veena(config(tmp)) as (p, _):
        auth = p.runtime.state["auth"]
        # 10 000 keys in the store, as a busy deployment might have
        keys = [new_key(f"owner{i % 500}", credits=10**9, rate_per_minute=10**9)
                for i in range(10_000)]
        for _, k in keys:
            await auth.db.create_key(k)
        t = time.perf_counter()
        await auth.cache.refresh()
        reload_ms = (time.perf_counter() - t) * 1000
        secret = keys[1234][0]
        req = info(secret)

        n = 20_000
        samples = []
        for _ in range(n):
            t = time.perf_counter_ns()
            auth.authenticate(req)
            samples.append((time.perf_counter_ns() - t) / 1000)
        out.append((label, "validate cached key (Auth.authenticate)", "p50 %.1f / p95 %.1f / p99 %.1f µs" % stats(samples[1000:])))

        samples = []
        for _ in range(5000):
            t = time.perf_counter_ns()
            await p.admit(req)
            samples.append((time.perf_counter_ns() - t) / 1000)
        out.append((label, "Pipeline.admit: cached key + rate limit (memory) + span",
                    "p50 %.1f / p95 %.1f / p99 %.1f µs" % stats(samples[500:])))

        samples = []
        h = hash_key(secret)
        for _ in range(1000):
            auth.cache.by_hash.pop(h, None)
            t = time.perf_counter_ns()
            result = auth.authenticate(req)
            if asyncio.iscoroutine(result):
                await result
            samples.append((time.perf_counter_ns() - t) / 1000)
        out.append((label, "validate uncached key (one store lookup)",
                    "p50 %.0f / p95 %.0f / p99 %.0f µs" % stats(samples[50:])))
        out.append((label, "full key reload, 10 000 keys", f"{reload_ms:.1f} ms"))

        key_id = keys[1234][1].id
        samples = []
        for i in range(500):
            t = time.perf_counter_ns()
            await auth.db.reserve(key_id, f"h{i}", 40, "r")
            await auth.db.settle(UsageRow(id=f"h{i}", key_id=key_id, request_id="r",
                                          created_at=time.time(), chars=20, chars_requested=40,
                                          audio_seconds=1.0, format="wav", speaker="kavya",
                                          synthesizer="espeak", stream=True, outcome="completed",
                                          ttfb_ms=10.0, total_ms=100.0, credits=20, held=40))
            samples.append((time.perf_counter_ns() - t) / 1000)
        out.append((label, "credit hold + settle", "p50 %.0f / p95 %.0f / p99 %.0f µs" % stats(samples[50:])))

        store = p.runtime.state["storage"]
        q = DurableQueue("bench", store._write, SentenceRow, tmp / "bench-spool", maxsize=rows,
                         batch_size=200, flush_interval=0.01)
        await q.start()
        text = "नमस्ते! The quick brown fox jumps over the lazy dog. " * 4
        t = time.perf_counter()
        for i in range(rows):
            q.put(SentenceRow(id=f"b{i}", request_id=f"b{i}", key_id=key_id,
                              created_at=time.time(), original_text=text, normalized_text=text,
                              speaker="kavya", synthesizer="espeak", format="mp3",
                              sample_rate=24000, stream=True, chunks=4, chars_requested=len(text),
                              chars_delivered=len(text), audio_seconds=9.5, bytes_sent=150_000,
                              ttfb_ms=40.0, total_ms=900.0, outcome="completed"))
        put_us = (time.perf_counter() - t) / rows * 1e6
        await q.stop(timeout=300)
        elapsed = time.perf_counter() - t
        assert q.stats["written"] == rows, q.stats
        out.append((label, "storage: put() on the request path", f"{put_us:.2f} µs a row"))
        out.append((label, f"storage: {rows} rows of {len(text)} chars written",
                    f"{rows / elapsed:,.0f} rows/s"))
    return out


def bench_redis() -> list[tuple[str, str, str]]:
    """One rate-limit check and one stream-slot acquire + release through Redis."""
    try:
        from tests.support.services import Redis

        server = Redis()
    except Exception as exc:  # noqa: BLE001
        print(f"(Redis rows skipped: {exc})")
        return []

    async def run() -> list[tuple[str, str, str]]:
        from veena.plugins.ratelimit.limiter import MemoryLimiter, RedisLimiter

        out = []
        for limiter in (MemoryLimiter(), RedisLimiter(server.url)):
            samples = []
            for _ in range(3000):
                t = time.perf_counter_ns()
                await limiter.hit("bench", 10**9)
                samples.append((time.perf_counter_ns() - t) / 1000)
            out.append((limiter.name, "rate-limit check (GCRA)",
                        "p50 %.0f / p95 %.0f / p99 %.0f µs" % stats(samples[300:])))
            samples = []
            for i in range(2000):
                t = time.perf_counter_ns()
                await limiter.acquire("bench", 10**6, f"l{i}", 60)
                await limiter.release("bench", f"l{i}")
                samples.append((time.perf_counter_ns() - t) / 1000)
            out.append((limiter.name, "stream slot acquire + release",
                        "p50 %.0f / p95 %.0f / p99 %.0f µs" % stats(samples[200:])))
            await limiter.close()
        return out
    try:
        return asyncio.run(run())
    finally:
        server.stop()


def main() -> None:
    results = []
    for var in ("DATABASE_URL", "SUPABASE_URL", "REDIS_URL"):
        os.environ.pop(var, None)
    with tempfile.TemporaryDirectory() as tmp:
        results += asyncio.run(bench_backend("sqlite", Path(tmp) / "s", 20_000))
        pg = None
        dsn = os.environ.get("BENCH_DATABASE_URL")
        try:
            if not dsn:
                from tests.support.services import Postgres

                pg = Postgres()
                dsn = pg.new_database()
        except Exception as exc:  # noqa: BLE001
            print(f"(PostgreSQL rows skipped: {exc})")
        if dsn:
            os.environ["DATABASE_URL"] = dsn
            try:
                results += asyncio.run(bench_backend("postgres", Path(tmp) / "p", 20_000))
            finally:
                os.environ.pop("DATABASE_URL", None)
                if pg is not None:
                    pg.destroy()
    results += bench_redis()
    width = max(len(r[1]) for r in results)
    print(f"{'store':<9} {'measure':<{width}}  result")
    for store, what, value in results:
        print(f"{store:<9} {what:<{width}}  {value}")


if __name__ == "__main__":
    main()
