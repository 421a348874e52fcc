"""API keys and credits.

- ``veena_authenticate``: the request's key (``Authorization: Bearer KEY`` or ``X-API-Key``) is
  hashed and looked up in the per-process cache (microseconds); a miss asks the store once.
  Missing, malformed, unknown, revoked and expired keys get 401; a key without the required
  scope 403; a key with no credits left 402. The admitted request carries a ``Principal``.
- ``veena_synthesize`` (wrapper): before the first audio, the request's possible cost is held
  on the key's balance in one atomic statement (402 when the balance is short, so parallel
  requests can never spend more than the key has).
- ``veena_request_finished``: the hold of the request the record is of (by ``record.id``) is
  settled for what was delivered (the characters of the chunks whose audio was sent), with a
  usage row made from the record, exactly once, whether the request
  completed, was cancelled by the client or failed. Settlements are written in the background
  and spooled to disk while the database is down.

Authentication is on when the store holds at least one key (``mode = "auto"``), always
(``"required"``) or never (``"off"``). With no key the service is open; ``veena serve`` then
refuses a non-loopback address unless ``server.allow_open_access`` is set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from veena.platform.audio import PCM
from veena.platform.db import (ApiKey, CreditLedger, StoreUnavailable, UsageRow, check_backend,
                               data_dir, describe, open_database)
from veena.platform.db.queue import DurableQueue
from veena.platform.errors import VeenaError
from veena.platform.hookspecs import hookimpl
from veena.platform.ids import new_id
from veena.platform.job import Job, Principal
from veena.platform.logs import event
from veena.platform.runtime import RequestInfo, RequestRecord, Runtime
from veena.plugins.auth.cache import MISS, KeyCache
from veena.plugins.auth.credits import CreditRule
from veena.plugins.auth.keys import hash_key, key_from_headers, unauthorized

log = logging.getLogger("veena.auth")
NAME = "auth"


class Config(msgspec.Struct, forbid_unknown_fields=True):
    """``[plugins.auth]``."""

    mode: Literal["auto", "required", "off"] = "auto"
    """auto: keys are required once the store has one; required: always; off: never."""
    backend: str = "auto"
    """auto (DATABASE_URL > SUPABASE_URL + SUPABASE_SERVICE_KEY > SQLite), sqlite, postgres,
    supabase, or ``package.module:factory`` (a third party's ``CreditLedger``)."""
    sqlite_path: str | None = None
    """Default: $VEENA_DATA_DIR/veena.db."""
    refresh_seconds: float = 30.0
    """How often each process reloads all keys regardless of changes."""
    change_poll_seconds: float = 0.25
    """How often each process asks the store whether a key was created or revoked (one small
    query; on SQLite only after ``PRAGMA data_version`` moved); a change reloads the keys."""
    required_scope: str | None = "tts"
    """Scope a key needs to synthesize ("*" in a key's scopes grants all); None: any key."""
    migrate: bool = True
    """Apply the shipped schema migrations at start-up."""
    hold_lease_seconds: float = 120.0
    """A credit hold is a lease: each process renews its streams' holds every quarter of this
    and gives back any hold not renewed for this long (its process died), at start-up and then
    every quarter of it."""
    pool_size: int = 5
    pgbouncer: bool = False
    """PostgreSQL behind PgBouncer in transaction mode: no prepared-statement cache."""
    spool_dir: str | None = None
    """Where settlements wait while the database is down. Default: $VEENA_DATA_DIR/spool."""
    credits: CreditRule = msgspec.field(default_factory=CreditRule)

    def __post_init__(self) -> None:
        check_backend(self.backend)
        if self.refresh_seconds <= 0 or self.change_poll_seconds <= 0:
            raise ValueError("refresh_seconds and change_poll_seconds must be positive")
        if self.hold_lease_seconds < 4:
            raise ValueError("hold_lease_seconds must be at least 4")


@dataclass(slots=True)
class Hold:
    id: str
    key_id: str
    amount: int
    task: asyncio.Task[Any] | None = None


@dataclass(slots=True)
class InFlight:
    job: Job
    hold: Hold

    def lapsed(self, lease_seconds: float) -> bool:
        """Finished a whole lease ago without its record settling it (never expected)."""
        finished = self.job.timings.finished
        return finished is not None and time.perf_counter() - finished > lease_seconds


@dataclass
class Auth:
    """One process's authentication and billing state (``runtime.state["auth"]``)."""

    config: Config
    db: CreditLedger | None
    cache: KeyCache | None = None
    settlements: DurableQueue[UsageRow] | None = None
    inflight: dict[str, InFlight] = field(default_factory=dict)
    """Held requests by their record's id (``Job.record_id``), until the record settles them."""
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _lease: asyncio.Task[None] | None = None

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        if self.db is None:
            log.info("auth is off: every request is admitted anonymously")
            return
        cfg = self.config
        self.cache = KeyCache(self.db, cfg.refresh_seconds, poll_seconds=cfg.change_poll_seconds)
        spool = Path(cfg.spool_dir) if cfg.spool_dir else data_dir() / "spool"
        self.settlements = DurableQueue("settlements", self._write_settlements, UsageRow, spool,
                                        batch_size=50, flush_interval=0.05)
        try:
            await self.db.open()
            if cfg.migrate:
                await self.db.migrate()
            await self.cache.refresh()
            await self._release_lapsed()
        except StoreUnavailable as exc:
            log.warning("key store %s unavailable at start-up (%s): synthesis requests get 503 "
                        "until it answers", describe(self.db), exc)
        self.cache.start()
        self._lease = asyncio.get_running_loop().create_task(self._lease_loop(), name="auth-lease")
        await self.settlements.start()
        log.info("auth: keys in %s; %s", describe(self.db), self.describe_mode(),
                 extra={"keys": len(self.cache.by_hash), "mode": cfg.mode})

    async def _release_lapsed(self) -> None:
        assert self.db is not None
        released = await self.db.release_stale_holds(self.config.hold_lease_seconds)
        if released:
            log.warning("gave back %d credit hold(s) whose lease lapsed (their process died)",
                        released)

    async def _lease_loop(self) -> None:
        """Renews the holds of this process's streams and gives back lapsed ones."""
        assert self.db is not None
        while True:
            await asyncio.sleep(self.config.hold_lease_seconds / 4)
            try:
                lease = self.config.hold_lease_seconds
                for record_id in [r for r, e in self.inflight.items() if e.lapsed(lease)]:
                    del self.inflight[record_id]  # not renewed: the store gives it back
                ids = [e.hold.id for e in self.inflight.values()]
                if ids:
                    await self.db.renew_holds(ids)
                await self._release_lapsed()
            except StoreUnavailable:
                pass  # tried again next round; a hold lapses only after a whole lease
            except Exception:  # noqa: BLE001 - keep the loop alive
                log.exception("renewing credit holds failed")

    async def stop(self) -> None:
        if self._lease is not None:
            self._lease.cancel()
            await asyncio.gather(self._lease, return_exceptions=True)
        if self.cache is not None:
            await self.cache.stop()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self.settlements is not None:
            await self.settlements.stop()
        if self.db is not None:
            await self.db.close()

    @property
    def enforced(self) -> bool:
        """Whether requests need a key now (also True while the store was never reached)."""
        if self.db is None or self.config.mode == "off":
            return False
        if self.config.mode == "required" or self.cache is None or not self.cache.loaded:
            return True
        return self.cache.keys_exist

    def describe_mode(self) -> str:
        if self.db is None or self.config.mode == "off":
            return "authentication off"
        if self.cache is not None and not self.cache.loaded:
            return "store not reached yet: requests refused until it is"
        return "keys required" if self.enforced else "open: no API key exists yet"

    # --- admission --------------------------------------------------------------------------
    def authenticate(self, request: RequestInfo) -> Principal | None | Any:
        """A Principal, None (open access), or a coroutine of either when the store is asked.
        Raises VeenaError to refuse."""
        if not self.enforced:
            return None
        return self.authorize(request, self.config.required_scope)

    def authorize(self, request: RequestInfo, scope: str | None) -> Principal | Any:
        """The request's key, required even while the service is open, checked for ``scope``
        instead of ``required_scope`` (the admin routes ask for ``admin``): a Principal, or a
        coroutine of one when the store is asked. Raises VeenaError to refuse."""
        cache = self.cache
        if cache is None:
            raise VeenaError("auth_unavailable", "this server has no key store (auth is off)",
                             503)
        if not cache.loaded:
            raise VeenaError("auth_unavailable", "the key store cannot be reached; retry shortly",
                             503, headers={"Retry-After": "5"})
        secret = key_from_headers(request.headers)
        if secret is None:
            raise unauthorized("missing_api_key", "an API key is required: send "
                               "`Authorization: Bearer <key>` or `X-API-Key: <key>`")
        key_hash = hash_key(secret)
        key = cache.get(key_hash)
        if key is MISS:
            return self._admit_after_fetch(key_hash, scope)
        return self.admit(key, scope)  # type: ignore[arg-type]

    async def _admit_after_fetch(self, key_hash: str, scope: str | None) -> Principal | None:
        try:
            key = await self.cache.fetch(key_hash)  # type: ignore[union-attr]
        except StoreUnavailable as exc:
            raise VeenaError("auth_unavailable", "the key store cannot be reached; retry shortly",
                             503, headers={"Retry-After": "5"}) from exc
        result = self.admit(key, scope)
        return await result if asyncio.iscoroutine(result) else result

    def admit(self, key: ApiKey | None, scope: str | None) -> Principal | Any:
        """Checks a looked-up key: known, live, granted ``scope``, with credits left."""
        if key is None:
            raise unauthorized("invalid_api_key", "unknown API key")
        if key.revoked:
            raise unauthorized("revoked_api_key", "this API key has been revoked")
        if key.expires_at is not None and time.time() >= key.expires_at:
            raise unauthorized("expired_api_key", "this API key has expired")
        if scope and scope not in key.scopes and "*" not in key.scopes:
            raise VeenaError("insufficient_scope", f"this API key lacks the {scope!r} scope", 403,
                             required_scope=scope)
        if key.credits is not None and key.credits <= 0:
            return self._admit_fresh_balance(key)
        return _principal(key)

    async def _admit_fresh_balance(self, key: ApiKey) -> Principal:
        """The cache says the balance is empty: ask the store before refusing (a top-up made
        since the last reload counts at once)."""
        try:
            fresh = await self.cache.fresh(key.id)  # type: ignore[union-attr]
        except StoreUnavailable:
            fresh = key
        if fresh is not None and (fresh.credits is None or fresh.credits > 0):
            return _principal(fresh)
        raise VeenaError("insufficient_credits", "this API key has no credits left", 402,
                         balance=0, key_id=key.id)

    # --- holds --------------------------------------------------------------------------------
    async def held(self, stream: AsyncIterator[PCM], job: Job) -> AsyncIterator[PCM]:
        """Holds the request's possible cost, then passes the audio through."""
        principal = job.principal
        assert principal is not None and principal.key_id is not None and self.db is not None
        async with aclosing(stream):
            amount = self.config.credits.hold(job)
            hold = Hold("h_" + new_id(), principal.key_id, amount)
            # Tracked before the database is asked: if the client leaves mid-hold, the request
            # still settles (with nothing delivered) once the hold's answer comes.
            self.inflight[job.record_id] = InFlight(job, hold)
            hold.task = asyncio.get_running_loop().create_task(
                self.db.reserve(hold.key_id, hold.id, amount, job.request_id))
            try:
                result = await asyncio.shield(hold.task)
            except StoreUnavailable as exc:
                raise VeenaError("credits_unavailable", "credits cannot be checked right now; "
                                 "retry shortly", 503, headers={"Retry-After": "5"}) from exc
            if not result.ok:
                raise VeenaError(
                    "insufficient_credits",
                    f"this request needs up to {amount} credits and the key has "
                    f"{result.balance if result.balance is not None else 0}", 402,
                    required=amount, balance=result.balance, key_id=hold.key_id)
            self.cache.set_balance(hold.key_id, result.balance)  # type: ignore[union-attr]
            if result.balance is not None:
                job.extra_headers["X-Credits-Remaining"] = str(result.balance)
            event("tts.credits_held", key_id=hold.key_id, credits=amount, balance=result.balance)
            async for block in stream:
                yield block

    # --- settlement -----------------------------------------------------------------------------
    def finished(self, record: RequestRecord) -> None:
        """Settles the hold of the request ``record`` is of; an unmetered key's request that
        delivered audio gets a usage row without a charge. Never raises."""
        if record.key_id is None or self.settlements is None:
            return
        entry = self.inflight.pop(record.id, None)
        if entry is not None:
            self._settle_when_held(record, entry.hold)
            return
        key = self.cache.by_id.get(record.key_id) if self.cache else None
        if key is not None and key.credits is None and record.chars_delivered:
            self.settlements.put(UsageRow.of(record, "u_" + record.id, record.key_id))

    def _settle_when_held(self, record: RequestRecord, hold: Hold) -> None:
        task = hold.task
        if task is None:
            return
        if task.done():
            self._settle(record, hold, task)
        else:
            task.add_done_callback(lambda t: self._settle(record, hold, t))

    def _settle(self, record: RequestRecord, hold: Hold, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is not None or not task.result().ok:
            return  # nothing was held
        charge = min(self.config.credits.charge(record), hold.amount)
        self.settlements.put(UsageRow.of(  # type: ignore[union-attr]
            record, hold.id, hold.key_id, credits=charge, held=hold.amount))

    async def _write_settlements(self, batch: list[UsageRow]) -> None:
        assert self.db is not None
        for usage in batch:
            try:
                balance = await self.db.settle(usage)
            except StoreUnavailable:
                raise  # the batch is spooled and replayed; settled rows are skipped then
            except Exception as exc:  # noqa: BLE001 - set this one aside, settle the others
                log.exception("settlement rejected by the database",
                              extra={"request_id": usage.request_id, "key_id": usage.key_id})
                self.settlements.reject([usage], exc)  # type: ignore[union-attr]
                continue
            if self.cache is not None:
                self.cache.set_balance(usage.key_id, balance)
            event("tts.credits_settled", request_id=usage.request_id, key_id=usage.key_id,
                  credits=usage.credits, held=usage.held, chars=usage.chars, balance=balance)


def _principal(key: ApiKey) -> Principal:
    return Principal(key_id=key.id, key_prefix=key.prefix, owner=key.owner, scopes=key.scopes,
                     credits=key.credits, rate_per_minute=key.rate_per_minute,
                     max_streams=key.max_streams)


# --- hooks ------------------------------------------------------------------------------------

def _auth(runtime: Runtime) -> Auth | None:
    return runtime.state.get("auth")


@hookimpl
def veena_startup(runtime: Runtime):
    cfg: Config = runtime.plugin_config(NAME) or Config()
    db = None
    if cfg.mode != "off":
        db = open_database(cfg.backend, cfg.sqlite_path, pool_size=cfg.pool_size,
                           pgbouncer=cfg.pgbouncer, need=CreditLedger)
    auth = Auth(cfg, db)
    runtime.state["auth"] = auth
    telemetry = runtime.telemetry
    telemetry.gauge("veena_auth_keys_cached", "API keys in this process's cache",
                    lambda: float(len(auth.cache.by_hash)) if auth.cache else 0.0)
    telemetry.gauge("veena_auth_cache", "key cache counters since start",
                    lambda: {(("counter", k),): float(v)
                             for k, v in (auth.cache.stats if auth.cache else {}).items()})
    telemetry.gauge("veena_settlements", "credit settlements by state since start",
                    lambda: {(("state", k),): float(v) for k, v in
                             (auth.settlements.stats if auth.settlements else {}).items()})
    return auth.start()


@hookimpl
def veena_shutdown(runtime: Runtime):
    auth = _auth(runtime)
    return auth.stop() if auth is not None else None


@hookimpl
def veena_auth_enforced(runtime: Runtime) -> bool | None:
    auth = _auth(runtime)
    return None if auth is None else auth.enforced


@hookimpl
def veena_authenticate(request: RequestInfo, runtime: Runtime):
    auth = _auth(runtime)
    return auth.authenticate(request) if auth is not None else None


@hookimpl(wrapper=True)
def veena_synthesize(job: Job, runtime: Runtime):
    stream = yield
    auth = _auth(runtime)
    p = job.principal
    if (stream is None or auth is None or auth.db is None or p is None or p.key_id is None
            or p.credits is None):
        return stream
    return auth.held(stream, job)


@hookimpl
def veena_request_finished(record: RequestRecord, runtime: Runtime) -> None:
    auth = _auth(runtime)
    if auth is not None:
        try:
            auth.finished(record)
        except Exception:  # noqa: BLE001 - billing bookkeeping must never break a request
            log.exception("credit settlement failed", extra={"request_id": record.request_id})


@hookimpl
def veena_register_commands(subparsers) -> None:
    from veena.plugins.auth import command

    command.register(subparsers)
