"""The embedded adapter: one SQLite file (WAL mode), used from one worker thread.

Every call runs on a single-thread executor, so the event loop never blocks on disk and the
connection is never shared between threads. Several processes may use one file: writers take
``BEGIN IMMEDIATE`` (SQLite's write lock) and wait up to ``busy_timeout`` for each other, which
makes each hold and settlement atomic across processes too.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from veena.platform.db import ApiKey, Database, Reservation, SentenceRow, UsageRow
from veena.platform.db.base import StoreUnavailable, migration_files
from veena.platform.db.ledger import USAGE_COLUMNS
from veena.platform.db.sentences import SENTENCE_COLUMNS

T = TypeVar("T")
KEY_COLUMNS = ("id, key_hash, prefix, owner, name, scopes, created_at, expires_at, revoked, "
               "rate_per_minute, max_streams, credits")


def _key(row: tuple) -> ApiKey:
    (id_, key_hash, prefix, owner, name, scopes, created, expires, revoked, rpm, streams,
     credits) = row
    return ApiKey(id=id_, key_hash=key_hash, prefix=prefix, owner=owner, name=name,
                  scopes=tuple(json.loads(scopes)), created_at=created, expires_at=expires,
                  revoked=bool(revoked), rate_per_minute=rpm, max_streams=streams,
                  credits=credits)


class SqliteDatabase(Database):
    """Keys, credits, usage and sentences in one SQLite file."""

    name = "sqlite"

    def __init__(self, path: str | Path, busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._data_version: int | None = None
        self._key_version: tuple[Any, ...] | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="veena-sqlite")

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._conn is None:
                raise StoreUnavailable(f"SQLite database {self.path} is closed")
            try:
                return fn(self._conn)
            except sqlite3.OperationalError as exc:  # locked too long, disk full, unreadable
                raise StoreUnavailable(f"SQLite: {exc}") from exc
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def open(self) -> None:
        def connect() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=self.busy_timeout_ms / 1000)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._conn = conn
        await asyncio.get_running_loop().run_in_executor(self._pool, connect)

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        await asyncio.get_running_loop().run_in_executor(self._pool, close)
        self._pool.shutdown(wait=False)

    async def migrate(self) -> list[str]:
        def migrate(conn: sqlite3.Connection) -> list[str]:
            applied: list[str] = []
            conn.execute("CREATE TABLE IF NOT EXISTS veena_schema_migrations "
                         "(version TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
            for version, sql in migration_files("sqlite"):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if conn.execute("SELECT 1 FROM veena_schema_migrations WHERE version = ?",
                                    (version,)).fetchone():
                        conn.execute("COMMIT")
                        continue
                    for statement in _statements(sql):
                        conn.execute(statement)
                    conn.execute("INSERT INTO veena_schema_migrations VALUES (?, ?)",
                                 (version, time.time()))
                    conn.execute("COMMIT")
                    applied.append(version)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            return applied
        return await self._run(migrate)

    # --- keys -------------------------------------------------------------------------------
    async def create_key(self, key: ApiKey) -> None:
        self._key_version = None
        now = time.time()
        await self._run(lambda c: c.execute(
            f"INSERT INTO veena_api_keys ({KEY_COLUMNS}, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key.id, key.key_hash, key.prefix, key.owner, key.name, json.dumps(list(key.scopes)),
             key.created_at, key.expires_at, int(key.revoked), key.rate_per_minute,
             key.max_streams, key.credits, now)))

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        row = await self._run(lambda c: c.execute(
            f"SELECT {KEY_COLUMNS} FROM veena_api_keys WHERE key_hash = ?", (key_hash,)).fetchone())
        return _key(row) if row else None

    async def get_key(self, key_id: str) -> ApiKey | None:
        row = await self._run(lambda c: c.execute(
            f"SELECT {KEY_COLUMNS} FROM veena_api_keys WHERE id = ?", (key_id,)).fetchone())
        return _key(row) if row else None

    async def list_keys(self, owner: str | None = None) -> list[ApiKey]:
        sql = f"SELECT {KEY_COLUMNS} FROM veena_api_keys"
        args: tuple[Any, ...] = ()
        if owner is not None:
            sql, args = sql + " WHERE owner = ?", (owner,)
        # Rows become ApiKeys on the worker thread: a reload of many keys stays off the loop.
        return await self._run(lambda c: [_key(r) for r in c.execute(
            sql + " ORDER BY created_at, id", args).fetchall()])

    async def key_version(self) -> tuple[Any, ...] | None:
        """``PRAGMA data_version`` (changes when another connection commits; free to read)
        gates a small aggregate over the keys table."""
        def version(c: sqlite3.Connection) -> tuple[Any, ...]:
            data_version = c.execute("PRAGMA data_version").fetchone()[0]
            if data_version != self._data_version or self._key_version is None:
                self._key_version = tuple(c.execute(
                    "SELECT count(*), max(created_at), count(revoked_at), max(revoked_at), "
                    "max(expires_at) FROM veena_api_keys").fetchone())
                self._data_version = data_version
            return self._key_version
        return await self._run(version)

    async def revoke_key(self, key_id: str) -> bool:
        self._key_version = None  # our own writes do not move data_version
        now = time.time()
        cur = await self._run(lambda c: c.execute(
            "UPDATE veena_api_keys SET revoked = 1, revoked_at = COALESCE(revoked_at, ?), "
            "updated_at = ? WHERE id = ?", (now, now, key_id)))
        return cur.rowcount > 0

    async def add_credits(self, key_id: str, amount: int) -> int | None:
        def add(c: sqlite3.Connection) -> int | None:
            row = c.execute("UPDATE veena_api_keys SET credits = COALESCE(credits, 0) + ?, "
                            "updated_at = ? WHERE id = ? RETURNING credits",
                            (int(amount), time.time(), key_id)).fetchone()
            return row[0] if row else None
        try:
            return await self._run(add)
        except sqlite3.IntegrityError as exc:
            raise ValueError("the balance cannot go below zero") from exc

    # --- credits and usage ------------------------------------------------------------------
    async def reserve(self, key_id: str, hold_id: str, amount: int,
                      request_id: str) -> Reservation:
        def reserve(c: sqlite3.Connection) -> Reservation:
            now = time.time()
            c.execute("BEGIN IMMEDIATE")
            try:
                row = c.execute(
                    "UPDATE veena_api_keys SET credits = credits - ?, updated_at = ? "
                    "WHERE id = ? AND (credits IS NULL OR credits >= ?) RETURNING credits",
                    (amount, now, key_id, amount)).fetchone()
                if row is None:
                    bal = c.execute("SELECT credits FROM veena_api_keys WHERE id = ?",
                                    (key_id,)).fetchone()
                    c.execute("COMMIT")
                    return Reservation(False, bal[0] if bal else None)
                c.execute("INSERT INTO veena_credit_holds (id, key_id, amount, request_id, "
                          "created_at) VALUES (?, ?, ?, ?, ?)",
                          (hold_id, key_id, amount, request_id, now))
                c.execute("COMMIT")
                return Reservation(True, row[0])
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return await self._run(reserve)

    async def settle(self, usage: UsageRow) -> int | None:
        def settle(c: sqlite3.Connection) -> int | None:
            c.execute("BEGIN IMMEDIATE")
            try:
                cur = c.execute(
                    f"INSERT INTO veena_usage ({', '.join(USAGE_COLUMNS)}) VALUES "
                    f"({', '.join('?' * len(USAGE_COLUMNS))}) ON CONFLICT (id) DO NOTHING",
                    tuple(_sql_value(getattr(usage, col)) for col in USAGE_COLUMNS))
                balance = None
                if cur.rowcount:
                    hold = c.execute("DELETE FROM veena_credit_holds WHERE id = ? "
                                     "RETURNING key_id, amount", (usage.id,)).fetchone()
                    if hold:
                        back = hold[1] - min(usage.credits, hold[1])
                        row = c.execute("UPDATE veena_api_keys SET credits = credits + ?, "
                                        "updated_at = ? WHERE id = ? RETURNING credits",
                                        (back, time.time(), hold[0])).fetchone()
                        balance = row[0] if row else None
                c.execute("COMMIT")
                return balance
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return await self._run(settle)

    async def usage(self, key_id: str, limit: int = 100) -> list[UsageRow]:
        rows = await self._run(lambda c: c.execute(
            f"SELECT {', '.join(USAGE_COLUMNS)} FROM veena_usage WHERE key_id = ? "
            "ORDER BY created_at DESC, id LIMIT ?", (key_id, limit)).fetchall())
        return [UsageRow(**{**dict(zip(USAGE_COLUMNS, r)), "stream": bool(r[10])}) for r in rows]

    async def renew_holds(self, hold_ids: list[str]) -> int:
        if not hold_ids:
            return 0
        marks = ", ".join("?" * len(hold_ids))
        cur = await self._run(lambda c: c.execute(
            f"UPDATE veena_credit_holds SET created_at = ? WHERE id IN ({marks})",
            (time.time(), *hold_ids)))
        return cur.rowcount

    async def release_stale_holds(self, older_than_s: float) -> int:
        def release(c: sqlite3.Connection) -> int:
            c.execute("BEGIN IMMEDIATE")
            try:
                holds = c.execute("DELETE FROM veena_credit_holds WHERE created_at < ? "
                                  "RETURNING key_id, amount",
                                  (time.time() - older_than_s,)).fetchall()
                for key_id, amount in holds:
                    c.execute("UPDATE veena_api_keys SET credits = credits + ?, updated_at = ? "
                              "WHERE id = ?", (amount, time.time(), key_id))
                c.execute("COMMIT")
                return len(holds)
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return await self._run(release)

    # --- sentences --------------------------------------------------------------------------
    async def write_sentences(self, rows: list[SentenceRow]) -> None:
        sql = (f"INSERT INTO veena_sentences ({', '.join(SENTENCE_COLUMNS)}) VALUES "
               f"({', '.join('?' * len(SENTENCE_COLUMNS))}) ON CONFLICT (id) DO NOTHING")
        values = [tuple(_sql_value(getattr(r, col)) for col in SENTENCE_COLUMNS) for r in rows]

        def write(c: sqlite3.Connection) -> None:
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany(sql, values)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        await self._run(write)

    async def sentences(self, limit: int = 100, request_id: str | None = None) -> list[SentenceRow]:
        where, args = ("WHERE request_id = ?", (request_id,)) if request_id else ("", ())
        rows = await self._run(lambda c: c.execute(
            f"SELECT {', '.join(SENTENCE_COLUMNS)} FROM veena_sentences {where} "
            "ORDER BY created_at DESC, id LIMIT ?", (*args, limit)).fetchall())
        stream_at = SENTENCE_COLUMNS.index("stream")
        return [SentenceRow(**{**dict(zip(SENTENCE_COLUMNS, r)), "stream": bool(r[stream_at])})
                for r in rows]

    async def count_sentences(self) -> int:
        return await self._run(lambda c: c.execute("SELECT count(*) FROM veena_sentences").fetchone()[0])


def _sql_value(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def _statements(sql: str) -> list[str]:
    """Splits a migration into statements (ours have no semicolons inside statements)."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]
