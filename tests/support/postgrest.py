"""A small PostgREST look-alike on loopback, backed by a real PostgreSQL database.

It serves the part of PostgREST's HTTP API the ``supabase`` client uses in
``veena.platform.db.supabase`` (select with ``eq`` filters, order, limit and offset; insert and
upsert-ignore; update; delete; ``rpc``; exact counts) by translating each request into SQL, so the
Supabase adapter runs the same contract tests as the others against real tables and the
migration's SQL functions. Every request is recorded (method, path, query, headers, body) for
tests to check what the client sent; ``down = True`` answers 503 like an unreachable gateway.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any
from urllib.parse import parse_qsl

import uvicorn

from tests.support.services import free_port

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"bad identifier {name!r}")
    return name


class FakePostgrest:
    """ASGI app + uvicorn thread; ``url`` is what SUPABASE_URL should be."""

    def __init__(self, dsn: str, service_key: str = "test-service-key") -> None:
        self.dsn = dsn
        self.service_key = service_key
        self.requests: list[dict[str, Any]] = []
        self.down = False
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", interface="asgi3",
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("fake PostgREST did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    # --- ASGI -------------------------------------------------------------------------------
    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query = parse_qsl(scope["query_string"].decode(), keep_blank_values=True)
        record = {"method": scope["method"], "path": scope["path"], "query": query,
                  "headers": headers, "json": json.loads(body) if body else None}
        self.requests.append(record)
        status, out_headers, payload = await self._handle(record)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in out_headers.items()]})
        await send({"type": "http.response.body", "body": payload})

    async def _handle(self, req: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        js = {"content-type": "application/json"}
        if self.down:
            return 503, js, b'{"message": "service unavailable"}'
        if (req["headers"].get("apikey") != self.service_key
                or req["headers"].get("authorization") != f"Bearer {self.service_key}"):
            return 401, js, b'{"code": "PGRST301", "message": "bad key"}'
        path = req["path"]
        if not path.startswith("/rest/v1/"):
            return 404, js, b'{"message": "not found"}'
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            rest = path[len("/rest/v1/"):]
            if rest.startswith("rpc/"):
                return await self._rpc(conn, _ident(rest[4:]), req["json"] or {})
            return await self._table(conn, _ident(rest), req)
        except asyncpg.PostgresError as exc:
            status = 409 if exc.sqlstate == "23505" else 400
            return status, js, json.dumps({"code": exc.sqlstate, "message": str(exc),
                                           "details": None, "hint": None}).encode()
        finally:
            await conn.close()

    async def _rpc(self, conn: Any, fn: str, args: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        info = await conn.fetchrow(
            "SELECT p.proargnames, p.proargtypes::regtype[]::text[] AS types, p.pronargs, "
            "p.proretset, t.typtype FROM pg_proc p JOIN pg_type t ON t.oid = p.prorettype "
            "WHERE p.proname = $1", fn)
        if info is None:
            return 404, {"content-type": "application/json"}, b'{"code": "PGRST202"}'
        names = list(info["proargnames"] or [])[: info["pronargs"]]
        call = ", ".join(
            f"{_ident(n)} => ($1::jsonb->'{n}')" if t == "jsonb"
            else f"{_ident(n)} => ($1::jsonb->>'{n}')::{t}"
            for n, t in zip(names, info["types"]))
        if info["proretset"] or info["typtype"] == "c":
            sql = f"SELECT coalesce(jsonb_agg(to_jsonb(r)), '[]'::jsonb) FROM {fn}({call}) r"
        else:
            sql = f"SELECT to_jsonb({fn}({call}))"
        result = await conn.fetchval(sql, json.dumps(args))
        return 200, {"content-type": "application/json"}, (result or "null").encode()

    async def _table(self, conn: Any, table: str, req: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        method, query = req["method"], req["query"]
        prefer = req["headers"].get("prefer", "")
        where, args, select, order, limit, offset, on_conflict = [], [], "*", [], None, None, None
        for key, value in query:
            if key == "select":
                select = ", ".join(_ident(c) for c in value.split(",")) if value != "*" else "*"
            elif key == "order":
                for part in value.split(","):
                    col, _, direction = part.partition(".")
                    nulls = " NULLS LAST" if "nullslast" in direction else \
                        " NULLS FIRST" if "nullsfirst" in direction else ""
                    order.append(f"{_ident(col)} {'DESC' if direction.startswith('desc') else 'ASC'}"
                                 + nulls)
            elif key == "limit":
                limit = int(value)
            elif key == "offset":
                offset = int(value)
            elif key == "on_conflict":
                on_conflict = _ident(value)
            elif key == "columns":
                pass
            else:
                op, _, operand = value.partition(".")
                if op == "in":  # in.(a,b) or in.("a","b")
                    args.append([v.strip().strip('"') for v in operand.strip("()").split(",")])
                    where.append(f"{table}.{_ident(key)}::text = ANY(${len(args)}::text[])")
                    continue
                if op != "eq":
                    raise ValueError(f"unsupported filter {op}")
                args.append(operand)
                where.append(f"{table}.{_ident(key)}::text = ${len(args)}")
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        js = {"content-type": "application/json"}
        if method in ("GET", "HEAD"):
            inner = f"SELECT {select} FROM {table}{cond}"
            if order:
                inner += " ORDER BY " + ", ".join(order)
            if limit is not None:
                inner += f" LIMIT {limit}"
            if offset is not None:
                inner += f" OFFSET {offset}"
            rows = await conn.fetchval(
                f"SELECT coalesce(jsonb_agg(to_jsonb(t)), '[]'::jsonb) FROM ({inner}) t", *args)
            headers = dict(js)
            if "count=exact" in prefer:
                total = await conn.fetchval(f"SELECT count(*) FROM {table}{cond}", *args)
                headers["content-range"] = f"0-{max(0, len(json.loads(rows)) - 1)}/{total}"
            return 200, headers, rows.encode()
        if method == "DELETE":
            out = await conn.fetch(f"DELETE FROM {table}{cond} RETURNING to_jsonb({table})", *args)
            if "return=minimal" in prefer:
                return 204, js, b""
            return 200, js, json.dumps([json.loads(r[0]) for r in out]).encode()
        body = req["json"]
        if method == "POST":
            rows = body if isinstance(body, list) else [body]
            cols = [_ident(c) for c in dict.fromkeys(k for r in rows for k in r)]
            collist = ", ".join(cols)
            sql = (f"INSERT INTO {table} ({collist}) SELECT {collist} FROM "
                   f"jsonb_populate_recordset(NULL::{table}, $1::jsonb)")
            if "resolution=ignore-duplicates" in prefer:
                sql += f" ON CONFLICT ({on_conflict or 'id'}) DO NOTHING"
            elif "resolution=merge-duplicates" in prefer:
                raise ValueError("merge upserts are not used by Veena")
            sql += " RETURNING to_jsonb(" + table + ")"
            out = await conn.fetch(sql, json.dumps(rows))
            payload = b"" if "return=minimal" in prefer else json.dumps(
                [json.loads(r[0]) for r in out]).encode()
            return 201, js, payload
        if method == "PATCH":
            cols = [_ident(c) for c in body]
            shift = len(args)
            sets = ", ".join(f"{c} = r.{c}" for c in cols)
            sql = (f"UPDATE {table} SET {sets} FROM jsonb_populate_record(NULL::{table}, "
                   f"${shift + 1}::jsonb) r{cond} RETURNING to_jsonb({table})")
            out = await conn.fetch(sql, *args, json.dumps(body))
            if "return=minimal" in prefer:
                return 204, js, b""
            return 200, js, json.dumps([json.loads(r[0]) for r in out]).encode()
        return 405, js, b'{"message": "method not allowed"}'

