"""The per-process key cache: every key by hash, reloaded in the background.

A request's key is looked up in a dict (microseconds). A key not in the cache is fetched from
the store once (concurrent misses for one hash share the fetch) and then cached; an unknown
hash is remembered as unknown until the next reload, so a flood of bad keys cannot flood the
database. A reload replaces the whole view. Between the periodic reloads the store's
``key_version`` (a small aggregate over the keys table; on SQLite only read after
``PRAGMA data_version`` moved) is polled every ``poll_seconds``, and a change (a key created,
revoked or deleted by any process) reloads at once: key changes reach every process sharing
the store within about ``poll_seconds`` plus one reload.
"""

from __future__ import annotations

import asyncio
import logging
import time

from veena.platform.db import ApiKey, KeyStore, StoreUnavailable

log = logging.getLogger("veena.auth")
MISS = object()


class KeyCache:
    def __init__(self, db: KeyStore, refresh_seconds: float = 30.0, max_unknown: int = 100_000,
                 poll_seconds: float = 0.25) -> None:
        self.db = db
        self.refresh_seconds = refresh_seconds
        self.poll_seconds = poll_seconds
        self._version: object = None
        self.max_unknown = max_unknown
        self.by_hash: dict[str, ApiKey] = {}
        self.by_id: dict[str, ApiKey] = {}
        self.loaded = False
        """True once one reload succeeded (until then nothing is known)."""
        self.refreshed_at: float | None = None
        self.stats = {"hits": 0, "misses": 0, "store_lookups": 0, "refreshes": 0,
                      "refresh_errors": 0, "change_reloads": 0}
        self._unknown: set[str] = set()
        self._inflight: dict[str, asyncio.Future[ApiKey | None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_error_log = 0.0

    @property
    def keys_exist(self) -> bool:
        return bool(self.by_hash)

    async def refresh(self) -> None:
        version = await self.db.key_version()  # before the read: a change during it reloads
        keys = await self.db.list_keys()
        self._version = version
        self.by_hash = {k.key_hash: k for k in keys}
        self.by_id = {k.id: k for k in keys}
        self._unknown = set()
        self.loaded = True
        self.refreshed_at = time.monotonic()
        self.stats["refreshes"] += 1

    def get(self, key_hash: str) -> ApiKey | None | object:
        """The cached key, None when known not to exist, ``MISS`` when the store must be asked."""
        key = self.by_hash.get(key_hash)
        if key is not None:
            self.stats["hits"] += 1
            return key
        self.stats["misses"] += 1
        return None if key_hash in self._unknown else MISS

    async def fetch(self, key_hash: str) -> ApiKey | None:
        """Asks the store for a hash the cache does not know (raises StoreUnavailable)."""
        pending = self._inflight.get(key_hash)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[ApiKey | None] = asyncio.get_running_loop().create_future()
        self._inflight[key_hash] = fut
        try:
            self.stats["store_lookups"] += 1
            key = await self.db.key_by_hash(key_hash)
            self.put(key) if key is not None else self._remember_unknown(key_hash)
            fut.set_result(key)
            return key
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: waiters re-raise it, nobody logs "never retrieved"
            raise
        finally:
            del self._inflight[key_hash]

    async def fresh(self, key_id: str) -> ApiKey | None:
        """Re-reads one key from the store (e.g. before refusing a zero balance)."""
        key = await self.db.get_key(key_id)
        if key is not None:
            self.put(key)
        return key

    def put(self, key: ApiKey) -> None:
        self.by_hash[key.key_hash] = key
        self.by_id[key.id] = key
        self._unknown.discard(key.key_hash)

    def set_balance(self, key_id: str, balance: int | None) -> None:
        """Keeps the cached balance close to the store's between reloads."""
        key = self.by_id.get(key_id)
        if key is not None and balance is not None:
            key.credits = balance

    def _remember_unknown(self, key_hash: str) -> None:
        if len(self._unknown) >= self.max_unknown:
            self._unknown.clear()
        self._unknown.add(key_hash)

    # --- background reload --------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="veena-key-cache")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _changed(self) -> bool:
        """Whether the store's key version moved since the last reload."""
        version = await self.db.key_version()
        return version is not None and version != self._version

    async def _run(self) -> None:
        while True:
            # Until the first load succeeds, retry sooner: requests wait on it.
            await asyncio.sleep(self.poll_seconds if self.loaded else min(2.0, self.refresh_seconds))
            try:
                due = self.refreshed_at is None or \
                    time.monotonic() - self.refreshed_at >= self.refresh_seconds
                if not due and not await self._changed():
                    continue
                if not due:
                    self.stats["change_reloads"] += 1
                await self.refresh()
            except StoreUnavailable as exc:
                self._log_error("key store unavailable; keeping the cached keys: %s", exc)
            except Exception as exc:  # noqa: BLE001 - a reload must never kill the loop
                self._log_error("key cache reload failed: %r", exc)

    def _log_error(self, msg: str, exc: BaseException) -> None:
        self.stats["refresh_errors"] += 1
        now = time.monotonic()
        if now - self._last_error_log > 60:
            self._last_error_log = now
            log.warning(msg, exc, extra={"keys_cached": len(self.by_hash)})
