"""Cloned-voice lookup: what ``veena_resolve_speaker`` costs a request that names a voice id.

    python tests/performance/bench_voices.py

One ``VoiceStore.get`` (the synchronous read speaker resolution does, on the event loop) on
SQLite and on a throwaway local PostgreSQL (started here from the PostgreSQL binaries, like the
tests), with 1,000 voices of 10 owners in the table. Median and p99 of 2,000 lookups.
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.services import Postgres, ServiceMissing  # noqa: E402
from veena.plugins.voices.store import (PostgresVoiceStore, SqliteVoiceStore,  # noqa: E402
                                        VoiceRecord, VoiceStore)


def fill(store: VoiceStore, n: int = 1000) -> list[tuple[str, str]]:
    now, rng = time.time(), random.Random(0)
    keys = []
    for i in range(n):
        rec = VoiceRecord(id=f"vc_{i:020x}", owner=f"key{i % 10}", name=f"v{i}",
                          global_tokens=tuple(rng.randrange(4096) for _ in range(32)),
                          created_at=now, updated_at=now)
        store.create(rec)
        keys.append((rec.id, rec.owner))
    return keys


def bench(store: VoiceStore, label: str, lookups: int = 2000) -> None:
    keys = fill(store)
    times = []
    for i in range(lookups):
        vid, owner = keys[i % len(keys)]
        t = time.perf_counter()
        assert store.get(vid, owner) is not None
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    print(f"{label:10s} get: median {statistics.median(times):.3f} ms, "
          f"p99 {times[int(len(times) * 0.99)]:.3f} ms ({lookups} lookups)")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = SqliteVoiceStore(Path(tmp) / "veena.db")
        sqlite.open()
        bench(sqlite, "sqlite")
        sqlite.close()
    try:
        pg = Postgres()
    except ServiceMissing as exc:
        print(f"postgres: skipped ({exc})")
        return
    try:
        if not pg.running:
            pg.start()
        store = PostgresVoiceStore(pg.new_database())
        store.open()
        bench(store, "postgres")
        store.close()
    finally:
        pg.destroy()


if __name__ == "__main__":
    main()
