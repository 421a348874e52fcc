"""The Supabase adapter: the ``supabase`` client (PostgREST over HTTPS) with the service key.

It uses the same tables and SQL functions as the PostgreSQL adapter; apply the migration to the
project's database first (``DATABASE_URL=<the project's Postgres URL> veena db migrate``), since
PostgREST cannot run DDL. Atomic operations are the migration's functions, called with
``rpc()``. The client's own retries are off: a hold must not be sent twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from veena.platform.db import ApiKey, Database, Reservation, SentenceRow, UsageRow
from veena.platform.db.base import StoreUnavailable
from veena.platform.db.escape import escape_row, unescape_row
from veena.platform.db.ledger import USAGE_COLUMNS
from veena.platform.db.sentences import SENTENCE_COLUMNS

KEY_SELECT = ("id,key_hash,prefix,owner,name,scopes,created_at,expires_at,revoked,"
              "rate_per_minute,max_streams,credits")
PAGE = 1000  # PostgREST's usual max-rows


def _iso(ts: float | None) -> str | None:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat() if ts is not None else None


def _ts(value: str | None) -> float | None:
    return dt.datetime.fromisoformat(value).timestamp() if value else None


def _key(row: dict[str, Any]) -> ApiKey:
    return ApiKey(id=row["id"], key_hash=row["key_hash"], prefix=row["prefix"], owner=row["owner"],
                  name=row["name"], scopes=tuple(row["scopes"] or ()),
                  created_at=_ts(row["created_at"]), expires_at=_ts(row["expires_at"]),
                  revoked=bool(row["revoked"]), rate_per_minute=row["rate_per_minute"],
                  max_streams=row["max_streams"], credits=row["credits"])


class SupabaseDatabase(Database):
    """Keys, credits, usage and sentences in a Supabase project, over PostgREST."""

    name = "supabase"

    def __init__(self, url: str, service_key: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self._service_key = service_key
        self.timeout = timeout
        self._client: Any = None
        self._http: Any = None

    def describe(self) -> str:
        return f"supabase:{self.url}"

    async def open(self) -> None:
        if self._client is not None:
            return
        import httpx
        from supabase import AsyncClientOptions, acreate_client

        self._http = httpx.AsyncClient(timeout=self.timeout)
        options = AsyncClientOptions(httpx_client=self._http, postgrest_client_retry=False,
                                     auto_refresh_token=False, persist_session=False)
        self._client = await acreate_client(self.url, self._service_key, options=options)

    async def close(self) -> None:
        self._client = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _exec(self, query: Any) -> Any:
        import httpx
        from postgrest.exceptions import APIError

        try:
            return (await query.execute()).data
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"Supabase unreachable: {type(exc).__name__}") from exc
        except APIError as exc:
            # "Not now": no PostgREST error code (a gateway answered), an HTTP 5xx/429/408 code
            # (a non-JSON answer), or PGRST0xx (PostgREST cannot reach its database). Any other
            # code is PostgREST's or PostgreSQL's verdict on the request itself.
            code = exc.code
            if code is None or code.startswith(("5", "PGRST0")) or code in ("429", "408"):
                raise StoreUnavailable(f"Supabase answered {code or exc.message}") from exc
            raise

    def _table(self, name: str) -> Any:
        if self._client is None:
            raise StoreUnavailable("Supabase client is not open")
        return self._client.table(name)

    def _rpc(self, fn: str, params: dict[str, Any]) -> Any:
        if self._client is None:
            raise StoreUnavailable("Supabase client is not open")
        return self._client.rpc(fn, params)

    async def migrate(self) -> list[str]:
        rows = await self._exec(self._table("veena_schema_migrations").select("version"))
        if not rows:
            raise RuntimeError("the Veena tables are missing in Supabase: run `veena db migrate` "
                               "with DATABASE_URL set to the project's PostgreSQL URL")
        return []

    # --- keys -------------------------------------------------------------------------------
    async def create_key(self, key: ApiKey) -> None:
        await self._exec(self._table("veena_api_keys").insert({
            "id": key.id, "key_hash": key.key_hash, "prefix": key.prefix, "owner": key.owner,
            "name": key.name, "scopes": list(key.scopes), "created_at": _iso(key.created_at),
            "expires_at": _iso(key.expires_at), "revoked": key.revoked,
            "rate_per_minute": key.rate_per_minute, "max_streams": key.max_streams,
            "credits": key.credits}, returning="minimal"))

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        rows = await self._exec(self._table("veena_api_keys").select(KEY_SELECT)
                                .eq("key_hash", key_hash).limit(1))
        return _key(rows[0]) if rows else None

    async def get_key(self, key_id: str) -> ApiKey | None:
        rows = await self._exec(self._table("veena_api_keys").select(KEY_SELECT)
                                .eq("id", key_id).limit(1))
        return _key(rows[0]) if rows else None

    async def list_keys(self, owner: str | None = None) -> list[ApiKey]:
        keys: list[ApiKey] = []
        while True:
            query = self._table("veena_api_keys").select(KEY_SELECT)
            if owner is not None:
                query = query.eq("owner", owner)
            rows = await self._exec(query.order("created_at").order("id")
                                    .range(len(keys), len(keys) + PAGE - 1))
            keys.extend(_key(r) for r in rows)
            if len(rows) < PAGE:
                return keys

    async def key_version(self) -> tuple[Any, ...] | None:
        """Two small reads: the number of keys with the newest creation, and the newest
        revocation (a revocation always sets ``revoked_at`` to now)."""
        from postgrest.types import CountMethod

        keys = self._table("veena_api_keys")
        try:
            newest = await keys.select("created_at", count=CountMethod.exact) \
                .order("created_at", desc=True).limit(1).execute()
        except Exception as exc:
            raise StoreUnavailable(f"Supabase key probe failed: {exc!r}") from exc
        revoked = await self._exec(self._table("veena_api_keys").select("revoked_at")
                                   .order("revoked_at", desc=True, nullsfirst=False).limit(1))
        return (newest.count, newest.data[0]["created_at"] if newest.data else None,
                revoked[0]["revoked_at"] if revoked else None)

    async def revoke_key(self, key_id: str) -> bool:
        key = await self.get_key(key_id)
        if key is None:
            return False
        if not key.revoked:
            now = _iso(dt.datetime.now(dt.UTC).timestamp())
            await self._exec(self._table("veena_api_keys")
                             .update({"revoked": True, "revoked_at": now, "updated_at": now},
                                     returning="minimal").eq("id", key_id))
        return True

    async def add_credits(self, key_id: str, amount: int) -> int | None:
        from postgrest.exceptions import APIError

        try:
            return _scalar(await self._exec(self._rpc(
                "veena_add_credits", {"p_key_id": key_id, "p_amount": int(amount)})))
        except APIError as exc:
            if exc.code == "23514":  # check_violation
                raise ValueError("the balance cannot go below zero") from exc
            raise

    # --- credits and usage ------------------------------------------------------------------
    async def reserve(self, key_id: str, hold_id: str, amount: int,
                      request_id: str) -> Reservation:
        rows = await self._exec(self._rpc("veena_reserve_credits", {
            "p_key_id": key_id, "p_hold_id": hold_id, "p_amount": int(amount),
            "p_request_id": request_id}))
        if not rows:
            return Reservation(False, None)
        row = rows[0] if isinstance(rows, list) else rows
        return Reservation(bool(row["ok"]), row["balance"])

    async def settle(self, usage: UsageRow) -> int | None:
        return _scalar(await self._exec(self._rpc(
            "veena_settle_usage", {"p": msgspec.to_builtins(usage)})))

    async def usage(self, key_id: str, limit: int = 100) -> list[UsageRow]:
        rows = await self._exec(self._table("veena_usage").select(",".join(USAGE_COLUMNS))
                                .eq("key_id", key_id).order("created_at", desc=True)
                                .order("id").limit(limit))
        return [UsageRow(**{**r, "created_at": _ts(r["created_at"])}) for r in rows]

    async def renew_holds(self, hold_ids: list[str]) -> int:
        if not hold_ids:
            return 0
        now = _iso(dt.datetime.now(dt.UTC).timestamp())
        rows = await self._exec(self._table("veena_credit_holds")
                                .update({"created_at": now}).in_("id", list(hold_ids)))
        return len(rows or [])

    async def release_stale_holds(self, older_than_s: float) -> int:
        return int(_scalar(await self._exec(self._rpc(
            "veena_release_stale_holds", {"p_seconds": float(older_than_s)}))) or 0)

    # --- sentences --------------------------------------------------------------------------
    async def write_sentences(self, rows: list[SentenceRow]) -> None:
        if not rows:
            return
        body = [{**msgspec.to_builtins(escape_row(r)), "created_at": _iso(r.created_at)}
                for r in rows]
        await self._exec(self._table("veena_sentences").upsert(
            body, on_conflict="id", ignore_duplicates=True, returning="minimal"))

    async def sentences(self, limit: int = 100, request_id: str | None = None) -> list[SentenceRow]:
        query = self._table("veena_sentences").select(",".join(SENTENCE_COLUMNS))
        if request_id:
            query = query.eq("request_id", request_id)
        rows = await self._exec(query.order("created_at", desc=True).order("id").limit(limit))
        return [unescape_row(SentenceRow(**{**r, "created_at": _ts(r["created_at"])}))
                for r in rows]

    async def count_sentences(self) -> int:
        from postgrest.types import CountMethod

        query = self._table("veena_sentences").select("id", count=CountMethod.exact).limit(1)
        try:
            return (await query.execute()).count or 0
        except Exception as exc:
            raise StoreUnavailable(f"Supabase count failed: {exc!r}") from exc


def _scalar(data: Any) -> Any:
    """A scalar function's result as PostgREST returns it (bare, or in a one-item list)."""
    if isinstance(data, list):
        data = data[0] if data else None
    if isinstance(data, dict) and len(data) == 1:
        data = next(iter(data.values()))
    return data
