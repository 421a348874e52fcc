"""The PostgreSQL adapter (asyncpg): the production store, and the schema Supabase exposes.

The credit hold and the settlement are the SQL functions of the migration
(``veena_reserve_credits``, ``veena_settle_usage``), each a single statement, so this adapter
and the Supabase one (which calls them over PostgREST) share one implementation of the money
logic. ``DATABASE_URL`` is a libpq URL, e.g. ``postgresql://user:pass@host:5432/db``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from veena.platform.db import ApiKey, Database, Reservation, SentenceRow, UsageRow
from veena.platform.db.base import StoreUnavailable, migration_files
from veena.platform.db.escape import escape_row, unescape_row
from veena.platform.db.ledger import USAGE_COLUMNS
from veena.platform.db.sentences import SENTENCE_COLUMNS

T = TypeVar("T")
MIGRATION_LOCK = 0x7665656E61  # pg_advisory_lock key: "veena"
KEY_COLUMNS = ("id, key_hash, prefix, owner, name, scopes, created_at, expires_at, revoked, "
               "rate_per_minute, max_streams, credits")


def _ts(value: dt.datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _key(row: Any) -> ApiKey:
    return ApiKey(id=row["id"], key_hash=row["key_hash"], prefix=row["prefix"], owner=row["owner"],
                  name=row["name"], scopes=tuple(row["scopes"]), created_at=_ts(row["created_at"]),
                  expires_at=_ts(row["expires_at"]), revoked=row["revoked"],
                  rate_per_minute=row["rate_per_minute"], max_streams=row["max_streams"],
                  credits=row["credits"])


def _unavailable(exc: BaseException) -> bool:
    """True for errors that mean "the server cannot be reached now", not "this is wrong"."""
    import asyncpg

    return isinstance(exc, (OSError, asyncio.TimeoutError, ConnectionError,
                            asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                            asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError,
                            asyncpg.AdminShutdownError, asyncpg.CrashShutdownError))


def _utc(ts: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ts, dt.UTC) if ts is not None else None


class PostgresDatabase(Database):
    """Keys, credits, usage and sentences in PostgreSQL (asyncpg)."""

    name = "postgres"

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 5,
                 statement_cache: bool = True, connect_timeout: float = 5.0,
                 command_timeout: float = 15.0) -> None:
        self.dsn = dsn
        self.min_size, self.max_size = min_size, max_size
        self.statement_cache = statement_cache  # off behind PgBouncer in transaction mode
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._pool: Any = None
        self._lock = asyncio.Lock()

    def describe(self) -> str:
        from urllib.parse import urlsplit

        u = urlsplit(self.dsn)
        port = f":{u.port}" if u.port else ""
        return f"postgres://{u.hostname or 'localhost'}{port}{u.path}"

    async def open(self) -> None:
        import asyncpg

        async with self._lock:
            if self._pool is not None:
                return
            try:
                self._pool = await asyncpg.create_pool(
                    self.dsn, min_size=self.min_size, max_size=self.max_size,
                    timeout=self.connect_timeout, command_timeout=self.command_timeout,
                    statement_cache_size=100 if self.statement_cache else 0)
            except Exception as exc:
                if _unavailable(exc):
                    raise StoreUnavailable(f"PostgreSQL unreachable: {type(exc).__name__}") from exc
                raise

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 10)
            except (asyncio.TimeoutError, Exception):
                pool.terminate()

    async def _with(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        if self._pool is None:
            await self.open()
        try:
            async with self._pool.acquire() as conn:
                return await fn(conn)
        except StoreUnavailable:
            raise
        except Exception as exc:
            if _unavailable(exc):
                raise StoreUnavailable(f"PostgreSQL unreachable: {type(exc).__name__}") from exc
            raise

    async def migrate(self) -> list[str]:
        async def migrate(conn: Any) -> list[str]:
            applied = []
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                await conn.execute("CREATE TABLE IF NOT EXISTS veena_schema_migrations "
                                   "(version text PRIMARY KEY, "
                                   "applied_at timestamptz NOT NULL DEFAULT now())")
                done = {r["version"] for r in await conn.fetch(
                    "SELECT version FROM veena_schema_migrations")}
                for version, sql in migration_files("postgres"):
                    if version in done:
                        continue
                    async with conn.transaction():
                        await conn.execute(sql)
                        await conn.execute("INSERT INTO veena_schema_migrations (version) "
                                           "VALUES ($1)", version)
                    applied.append(version)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
            return applied
        return await self._with(migrate)

    # --- keys -------------------------------------------------------------------------------
    async def create_key(self, key: ApiKey) -> None:
        await self._with(lambda c: c.execute(
            f"INSERT INTO veena_api_keys ({KEY_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            key.id, key.key_hash, key.prefix, key.owner, key.name, list(key.scopes),
            _utc(key.created_at), _utc(key.expires_at), key.revoked, key.rate_per_minute,
            key.max_streams, key.credits))

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        row = await self._with(lambda c: c.fetchrow(
            f"SELECT {KEY_COLUMNS} FROM veena_api_keys WHERE key_hash = $1", key_hash))
        return _key(row) if row else None

    async def get_key(self, key_id: str) -> ApiKey | None:
        row = await self._with(lambda c: c.fetchrow(
            f"SELECT {KEY_COLUMNS} FROM veena_api_keys WHERE id = $1", key_id))
        return _key(row) if row else None

    async def list_keys(self, owner: str | None = None) -> list[ApiKey]:
        if owner is None:
            rows = await self._with(lambda c: c.fetch(
                f"SELECT {KEY_COLUMNS} FROM veena_api_keys ORDER BY created_at, id"))
        else:
            rows = await self._with(lambda c: c.fetch(
                f"SELECT {KEY_COLUMNS} FROM veena_api_keys WHERE owner = $1 "
                "ORDER BY created_at, id", owner))
        return [_key(r) for r in rows]

    async def key_version(self) -> tuple[Any, ...] | None:
        row = await self._with(lambda c: c.fetchrow(
            "SELECT count(*), max(created_at), count(revoked_at), max(revoked_at), "
            "max(expires_at) FROM veena_api_keys"))
        return tuple(row)

    async def revoke_key(self, key_id: str) -> bool:
        status = await self._with(lambda c: c.execute(
            "UPDATE veena_api_keys SET revoked = true, revoked_at = COALESCE(revoked_at, now()), "
            "updated_at = now() WHERE id = $1", key_id))
        return status != "UPDATE 0"

    async def add_credits(self, key_id: str, amount: int) -> int | None:
        import asyncpg

        try:
            return await self._with(lambda c: c.fetchval(
                "SELECT veena_add_credits($1, $2)", key_id, int(amount)))
        except asyncpg.CheckViolationError as exc:
            raise ValueError("the balance cannot go below zero") from exc

    # --- credits and usage ------------------------------------------------------------------
    async def reserve(self, key_id: str, hold_id: str, amount: int,
                      request_id: str) -> Reservation:
        row = await self._with(lambda c: c.fetchrow(
            "SELECT ok, balance FROM veena_reserve_credits($1, $2, $3, $4)",
            key_id, hold_id, int(amount), request_id))
        if row is None:  # no such key
            return Reservation(False, None)
        return Reservation(row["ok"], row["balance"])

    async def settle(self, usage: UsageRow) -> int | None:
        return await self._with(lambda c: c.fetchval(
            "SELECT veena_settle_usage($1::jsonb)", msgspec.json.encode(usage).decode()))

    async def usage(self, key_id: str, limit: int = 100) -> list[UsageRow]:
        rows = await self._with(lambda c: c.fetch(
            f"SELECT {', '.join(USAGE_COLUMNS)} FROM veena_usage WHERE key_id = $1 "
            "ORDER BY created_at DESC, id LIMIT $2", key_id, limit))
        return [UsageRow(**{**dict(r), "created_at": _ts(r["created_at"])}) for r in rows]

    async def renew_holds(self, hold_ids: list[str]) -> int:
        if not hold_ids:
            return 0
        status = await self._with(lambda c: c.execute(
            "UPDATE veena_credit_holds SET created_at = now() WHERE id = ANY($1::text[])",
            list(hold_ids)))
        return int(status.split()[-1])

    async def release_stale_holds(self, older_than_s: float) -> int:
        return await self._with(lambda c: c.fetchval(
            "SELECT veena_release_stale_holds($1)", float(older_than_s)))

    # --- sentences --------------------------------------------------------------------------
    async def write_sentences(self, rows: list[SentenceRow]) -> None:
        if not rows:
            return
        cols = ", ".join(SENTENCE_COLUMNS)
        # One round trip a batch: the rows travel as one JSON array.
        await self._with(lambda c: c.execute(
            f"INSERT INTO veena_sentences ({cols}) "
            f"SELECT {', '.join('to_timestamp(r.created_at)' if col == 'created_at' else 'r.' + col for col in SENTENCE_COLUMNS)} "
            f"FROM jsonb_to_recordset($1::jsonb) AS r({_SENTENCE_TYPES}) "
            "ON CONFLICT (id) DO NOTHING",
            msgspec.json.encode([escape_row(r) for r in rows]).decode()))

    async def sentences(self, limit: int = 100, request_id: str | None = None) -> list[SentenceRow]:
        cols = ", ".join(SENTENCE_COLUMNS)
        if request_id:
            rows = await self._with(lambda c: c.fetch(
                f"SELECT {cols} FROM veena_sentences WHERE request_id = $1 "
                "ORDER BY created_at DESC, id LIMIT $2", request_id, limit))
        else:
            rows = await self._with(lambda c: c.fetch(
                f"SELECT {cols} FROM veena_sentences ORDER BY created_at DESC, id LIMIT $1", limit))
        return [unescape_row(SentenceRow(**{**dict(r), "created_at": _ts(r["created_at"])}))
                for r in rows]

    async def count_sentences(self) -> int:
        return await self._with(lambda c: c.fetchval("SELECT count(*) FROM veena_sentences"))


_SENTENCE_TYPES = (
    "id text, request_id text, key_id text, created_at double precision, original_text text, "
    "normalized_text text, speaker text, synthesizer text, format text, sample_rate integer, "
    "stream boolean, chunks integer, chars_requested integer, chars_delivered integer, "
    "audio_seconds double precision, bytes_sent bigint, ttfb_ms double precision, "
    "total_ms double precision, outcome text, error_code text")
