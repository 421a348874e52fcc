"""Where cloned voices live: one small table (``veena_voices``) in the auth plugin's database.

Global tokens and metadata only, never the clip. The API is synchronous so that speaker
resolution (``veena_resolve_speaker``, called from the synchronous ``Pipeline.prepare``) can read
it; async routes call it through ``asyncio.to_thread``. There is no cache: every lookup reads
the database, so every process on one database sees a created, changed or deleted voice at once.

- SQLite (default): one ``sqlite3`` connection (WAL) behind a lock; a lookup is a local read.
- PostgreSQL (``DATABASE_URL``): asyncpg (the only driver installed) on a private event loop in a
  daemon thread; a synchronous call waits for its query there.
- Supabase (``SUPABASE_URL`` + ``SUPABASE_SERVICE_KEY``): PostgREST through the synchronous
  ``supabase`` client; the table is created beforehand over SQL (PostgREST runs no DDL).
"""

from __future__ import annotations

import abc
import asyncio
import json
import re
import sqlite3
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")
COLUMNS = ("id", "owner", "name", "description", "languages", "gender", "global_tokens",
           "created_at", "updated_at")
SCHEMA = ("CREATE TABLE IF NOT EXISTS veena_voices (id TEXT PRIMARY KEY, owner TEXT NOT NULL, "
          "name TEXT NOT NULL, description TEXT NOT NULL DEFAULT '', languages TEXT NOT NULL "
          "DEFAULT '[]', gender TEXT NOT NULL DEFAULT '', global_tokens TEXT NOT NULL, "
          "created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL)",
          "CREATE INDEX IF NOT EXISTS veena_voices_owner ON veena_voices (owner)")
EDITABLE = ("name", "description", "languages", "gender")
SCHEMA_LOCK = 0x766F696365  # pg_advisory_xact_lock key: "voice"


class VoiceRecord(msgspec.Struct, kw_only=True):
    """One cloned voice as stored."""

    id: str
    owner: str
    name: str
    description: str = ""
    languages: tuple[str, ...] = ()
    gender: str = ""
    global_tokens: tuple[int, ...]
    created_at: float
    updated_at: float


def _row(values: tuple | Any) -> VoiceRecord:
    v = dict(zip(COLUMNS, tuple(values)))
    v["languages"] = tuple(json.loads(v["languages"]))
    v["global_tokens"] = tuple(json.loads(v["global_tokens"]))
    return VoiceRecord(**v)


def _values(rec: VoiceRecord) -> tuple:
    return (rec.id, rec.owner, rec.name, rec.description, json.dumps(list(rec.languages)),
            rec.gender, json.dumps(list(rec.global_tokens)), rec.created_at, rec.updated_at)


class VoiceStore(abc.ABC):
    """Owner-scoped CRUD: another owner's voice is invisible (``None`` / ``False``)."""

    name = "?"

    @abc.abstractmethod
    def open(self) -> None:
        """Connects and creates the table when it is missing."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def _execute(self, sql: str, args: tuple, fetch: bool) -> list[tuple]:
        """Runs one statement (``?`` placeholders); rows when ``fetch``."""

    def create(self, rec: VoiceRecord) -> None:
        self._execute(f"INSERT INTO veena_voices ({', '.join(COLUMNS)}) VALUES "
                      f"({', '.join('?' * len(COLUMNS))})", _values(rec), False)

    def get(self, voice_id: str, owner: str) -> VoiceRecord | None:
        rows = self._execute(f"SELECT {', '.join(COLUMNS)} FROM veena_voices "
                             "WHERE id = ? AND owner = ?", (voice_id, owner), True)
        return _row(rows[0]) if rows else None

    def list(self, owner: str) -> list[VoiceRecord]:
        rows = self._execute(f"SELECT {', '.join(COLUMNS)} FROM veena_voices WHERE owner = ? "
                             "ORDER BY created_at, id", (owner,), True)
        return [_row(r) for r in rows]

    def update(self, voice_id: str, owner: str, changes: dict[str, Any]) -> VoiceRecord | None:
        """Sets the ``EDITABLE`` fields in ``changes``; the voice after it, None when unknown."""
        sets = {k: (json.dumps(list(v)) if k == "languages" else v)
                for k, v in changes.items() if k in EDITABLE}
        sets["updated_at"] = time.time()
        rows = self._execute(
            f"UPDATE veena_voices SET {', '.join(f'{k} = ?' for k in sets)} "
            f"WHERE id = ? AND owner = ? RETURNING {', '.join(COLUMNS)}",
            (*sets.values(), voice_id, owner), True)
        return _row(rows[0]) if rows else None

    def delete(self, voice_id: str, owner: str) -> bool:
        rows = self._execute("DELETE FROM veena_voices WHERE id = ? AND owner = ? RETURNING id",
                             (voice_id, owner), True)
        return bool(rows)


class SqliteVoiceStore(VoiceStore):
    name = "sqlite"

    def __init__(self, path: Path, busy_timeout_s: float = 10.0) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=self.busy_timeout_s)
        conn.execute("PRAGMA journal_mode = WAL")
        for statement in SCHEMA:
            conn.execute(statement)
        self._conn = conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _execute(self, sql: str, args: tuple, fetch: bool) -> list[tuple]:
        with self._lock:
            if self._conn is None:
                raise RuntimeError("the voice store is closed")
            cur = self._conn.execute(sql, args)
            return cur.fetchall() if fetch else []


_PLACEHOLDER = re.compile(r"\?")


class PostgresVoiceStore(VoiceStore):
    name = "postgres"

    def __init__(self, dsn: str, timeout_s: float = 10.0) -> None:
        self.dsn = dsn
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="veena-voices-pg",
                                        daemon=True)
        self._pool: Any = None

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.timeout_s)

    def open(self) -> None:
        import asyncpg

        self._thread.start()

        async def connect() -> Any:
            pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=4,
                                             command_timeout=self.timeout_s)
            async with pool.acquire() as conn, conn.transaction():
                # Two processes starting at once would race on CREATE TABLE IF NOT EXISTS.
                await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
                for statement in SCHEMA:
                    await conn.execute(statement)
            return pool

        try:
            self._pool = self._call(connect())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Closes the pool (terminated when the database does not answer) and the thread."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                self._call(asyncio.wait_for(pool.close(), 3.0))
            except Exception:  # noqa: BLE001 - the database is gone: drop the connections
                self._loop.call_soon_threadsafe(pool.terminate)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def _execute(self, sql: str, args: tuple, fetch: bool) -> list[tuple]:
        if self._pool is None:
            raise RuntimeError("the voice store is closed")
        n = iter(range(1, len(args) + 1))
        query = _PLACEHOLDER.sub(lambda _: f"${next(n)}", sql)

        async def run() -> list[tuple]:
            async with self._pool.acquire() as conn:
                if fetch:
                    return [tuple(r.values()) for r in await conn.fetch(query, *args)]
                await conn.execute(query, *args)
                return []

        return self._call(run())


class TableMissing(Exception):
    """The Supabase project has no ``veena_voices`` table (PostgREST cannot create one)."""


class SupabaseVoiceStore(VoiceStore):
    """The table in a Supabase project, over PostgREST with the service key (the ``supabase``
    client, synchronous, its retries off). The table is created once with ``SCHEMA``'s SQL
    (``DATABASE_URL`` and a start-up, or the project's SQL editor)."""

    name = "supabase"

    def __init__(self, url: str, service_key: str, timeout_s: float = 10.0) -> None:
        self.url = url
        self._service_key = service_key
        self.timeout_s = timeout_s
        self._client: Any = None
        self._http: Any = None
        self._lock = threading.Lock()

    def open(self) -> None:
        import httpx
        from supabase import ClientOptions, create_client

        self._http = httpx.Client(timeout=self.timeout_s)
        options = ClientOptions(httpx_client=self._http, postgrest_client_retry=False,
                                auto_refresh_token=False, persist_session=False)
        self._client = create_client(self.url, self._service_key, options=options)
        try:
            self._run(self._table().select("id").limit(1))
        except TableMissing:
            self.close()
            raise

    def close(self) -> None:
        self._client = None
        if self._http is not None:
            self._http.close()
            self._http = None

    def _table(self) -> Any:
        if self._client is None:
            raise RuntimeError("the voice store is closed")
        return self._client.table("veena_voices")

    def _run(self, query: Any) -> list[dict[str, Any]]:
        from postgrest.exceptions import APIError

        try:
            with self._lock:  # one httpx.Client, used from the routes' worker threads
                return query.execute().data or []
        except APIError as exc:
            if exc.code in ("42P01", "PGRST205"):
                raise TableMissing("the Supabase project has no veena_voices table") from exc
            raise

    def _execute(self, sql: str, args: tuple, fetch: bool) -> list[tuple]:
        raise NotImplementedError("the Supabase store speaks PostgREST, not SQL")

    @staticmethod
    def _record(row: dict[str, Any]) -> VoiceRecord:
        return _row(tuple(row[c] for c in COLUMNS))

    def create(self, rec: VoiceRecord) -> None:
        self._run(self._table().insert(dict(zip(COLUMNS, _values(rec))), returning="minimal"))

    def get(self, voice_id: str, owner: str) -> VoiceRecord | None:
        rows = self._run(self._table().select(",".join(COLUMNS)).eq("id", voice_id)
                         .eq("owner", owner).limit(1))
        return self._record(rows[0]) if rows else None

    def list(self, owner: str) -> list[VoiceRecord]:
        rows = self._run(self._table().select(",".join(COLUMNS)).eq("owner", owner)
                         .order("created_at").order("id"))
        return [self._record(r) for r in rows]

    def update(self, voice_id: str, owner: str, changes: dict[str, Any]) -> VoiceRecord | None:
        sets = {k: (json.dumps(list(v)) if k == "languages" else v)
                for k, v in changes.items() if k in EDITABLE}
        sets["updated_at"] = time.time()
        rows = self._run(self._table().update(sets).eq("id", voice_id).eq("owner", owner))
        return self._record(rows[0]) if rows else None

    def delete(self, voice_id: str, owner: str) -> bool:
        return bool(self._run(self._table().delete().eq("id", voice_id).eq("owner", owner)))


def open_store(backend: str, sqlite_path: Path, dsn: str | None) -> VoiceStore:
    """A connected store: PostgreSQL for ``backend`` "postgres" (``dsn``), Supabase for
    "supabase" (``SUPABASE_URL`` and ``SUPABASE_SERVICE_KEY``), else SQLite."""
    import os

    store: VoiceStore
    if backend == "postgres" and dsn:
        store = PostgresVoiceStore(dsn)
    elif backend == "supabase":
        store = SupabaseVoiceStore(os.environ["SUPABASE_URL"], os.environ["SUPABASE_SERVICE_KEY"])
    else:
        store = SqliteVoiceStore(sqlite_path)
    store.open()
    return store
