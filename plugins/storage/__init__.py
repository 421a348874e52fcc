"""Sentence storage: every request's original and normalized text with its metadata.

``veena_request_finished`` only puts the request's record on a bounded in-memory queue (never a
database call on the request's path, let alone before its first byte); a background task writes
batches to the ``SentenceStore`` its ``backend`` selects (SQLite by default, PostgreSQL,
Supabase, or a third party's). While the database is down, batches go to a spool file under
``spool_dir`` and are replayed once it answers; a full queue spills to the same spool. Shutdown
drains the queue. ``runtime.state["storage"].stats`` counts enqueued, written,
spooled, replayed, queue_full, rejected and lost rows for metrics. Text is never logged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import msgspec

from veena.platform.db import (SentenceStore, StoreUnavailable, check_backend, data_dir,
                               describe, open_database)
from veena.platform.db.queue import DurableQueue
from veena.platform.hookspecs import hookimpl
from veena.platform.runtime import RequestRecord, Runtime

log = logging.getLogger("veena.storage")
NAME = "storage"


class Config(msgspec.Struct, forbid_unknown_fields=True):
    """``[plugins.storage]``."""

    backend: str = "auto"
    """auto (DATABASE_URL > SUPABASE_URL + SUPABASE_SERVICE_KEY > SQLite), sqlite, postgres,
    supabase, or ``package.module:factory`` (a third party's ``SentenceStore``)."""
    sqlite_path: str | None = None
    """Default: $VEENA_DATA_DIR/veena.db."""
    queue_size: int = 10_000
    batch_size: int = 200
    flush_seconds: float = 0.2
    """How long a batch waits to fill before it is written."""
    retry_seconds: float = 5.0
    """How often a down database is tried again."""
    spool_dir: str | None = None
    """Default: $VEENA_DATA_DIR/spool."""
    migrate: bool = True
    pool_size: int = 2
    pgbouncer: bool = False

    def __post_init__(self) -> None:
        check_backend(self.backend)
        if self.queue_size < 1 or self.batch_size < 1:
            raise ValueError("queue_size and batch_size must be at least 1")


class SentenceWriter:
    """This process's writer (``runtime.state["storage"]``)."""

    def __init__(self, config: Config, db: SentenceStore) -> None:
        self.config = config
        self.db = db
        spool = Path(config.spool_dir) if config.spool_dir else data_dir() / "spool"
        self.queue: DurableQueue[RequestRecord] = DurableQueue(
            "sentences", self._write, RequestRecord, spool, maxsize=config.queue_size,
            batch_size=config.batch_size, flush_interval=config.flush_seconds,
            retry_interval=config.retry_seconds)
        self._ready = False

    @property
    def stats(self) -> dict[str, int]:
        return {**self.queue.stats, "pending": self.queue.pending,
                "database_down": int(self.queue.database_down)}

    async def _prepare(self) -> None:
        if not self._ready:
            await self.db.open()
            if self.config.migrate:
                await self.db.migrate()
            self._ready = True

    async def _write(self, rows: list[RequestRecord]) -> None:
        await self._prepare()
        await self.db.write_sentences(rows)

    async def start(self) -> None:
        try:
            await self._prepare()
        except StoreUnavailable as exc:
            log.warning("sentence store %s unavailable at start-up (%s): spooling to disk "
                        "until it answers", describe(self.db), exc)
        await self.queue.start()
        log.info("sentence storage in %s", describe(self.db))

    async def stop(self) -> None:
        await self.queue.stop()
        await self.db.close()

    def add(self, record: RequestRecord) -> None:
        """Queues ``record`` as it is (its ``id`` keeps a replayed write from doubling it)."""
        self.queue.put(record)


@hookimpl
def veena_startup(runtime: Runtime):
    cfg: Config = runtime.plugin_config(NAME) or Config()
    db = open_database(cfg.backend, cfg.sqlite_path, pool_size=cfg.pool_size,
                       pgbouncer=cfg.pgbouncer, need=SentenceStore)
    store = SentenceWriter(cfg, db)
    runtime.state["storage"] = store
    telemetry = runtime.telemetry
    telemetry.gauge("veena_storage_rows", "sentence rows by state since start (enqueued, "
                    "written, spooled, replayed, queue_full, rejected, lost, pending)",
                    lambda: {(("state", k),): float(v) for k, v in store.stats.items()})
    return store.start()


@hookimpl
def veena_shutdown(runtime: Runtime):
    store = runtime.state.get("storage")
    return store.stop() if store is not None else None


@hookimpl
def veena_request_finished(record: RequestRecord, runtime: Runtime) -> None:
    store = runtime.state.get("storage")
    if store is not None:
        store.add(record)
