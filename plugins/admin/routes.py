"""The ``/v1/admin`` routes: thin HTTP over ``veena.plugins.auth.operations``."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody

from veena.platform.awaitables import await_maybe
from veena.platform.errors import VeenaError
from veena.platform.openapi import error_responses
from veena.platform.pipeline import decode_body
from veena.platform.runtime import RequestInfo, Runtime
from veena.plugins.auth import operations as ops

audit = logging.getLogger("veena.audit")
PREFIX = "/v1/admin"
ERRORS = error_responses(401, 402, 403, 503)
"""The key checks (no key, a key without ``admin``, a metered admin key at zero) and a store
that is off."""
TAGS = ["admin"]


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /v1/admin/keys``: the new key. ``expires_at`` is Unix seconds or an ISO date
    (UTC unless it says otherwise); ``expires_in`` a duration from now (90d, 12h, 30m)."""

    owner: str
    name: str = ""
    scopes: list[str] | str = msgspec.field(default_factory=lambda: ["tts"])
    credits: int | None = None
    """Starting balance; left out: not metered."""
    rate_per_minute: int | None = None
    max_streams: int | None = None
    expires_at: float | str | None = None
    expires_in: str | None = None


class CreditChange(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/admin/keys/{key_id}/credits``: credits to add (negative removes)."""

    amount: int


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def _store(runtime: Runtime, plugin: str, what: str) -> Any:
    state = runtime.state.get(plugin)
    db = getattr(state, "db", None)
    if db is None:
        raise VeenaError("admin_unavailable", f"the admin API needs the {plugin} plugin's "
                         f"{what}, which this server has not opened", 503)
    return db


async def _admit(request: Request) -> ops.Actor:
    """The caller as an ``Actor`` when its key has the admin scope; refusals are audited."""
    runtime = _runtime(request)
    auth = runtime.state.get("auth")
    _store(runtime, "auth", "key store")
    info = RequestInfo(method=request.method, path=request.url.path,
                       headers=dict(request.headers),
                       client_host=request.client.host if request.client else None)
    try:
        principal = await await_maybe(auth.authorize(info, ops.ADMIN_SCOPE))
    except VeenaError as exc:
        audit.warning("admin.refused", extra={"code": exc.code, "status": exc.status,
                                              "route": request.url.path,
                                              "client": info.client_host})
        raise
    cached = auth.cache.by_id.get(principal.key_id) if auth.cache is not None else None
    prefix = getattr(principal, "key_prefix", None) or getattr(cached, "prefix", None)
    return ops.Actor("key", principal.key_id, prefix, principal.owner)


def _csv(text: str, name: str) -> Response[str]:
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


CSV = {200: ResponseSpec(str, description="CSV with a header line", media_type="text/csv")}


@post(f"{PREFIX}/keys", status_code=201, summary="Create an API key (its secret is shown once)",
      responses=ERRORS, tags=TAGS)
async def create_key(request: Request, data: JSONBody[KeyCreate]) -> ops.CreatedKey:
    actor = await _admit(request)
    body = decode_body(await request.body(), KeyCreate)
    spec = ops.KeySpec(owner=body.owner, name=body.name, scopes=ops.scopes_of(body.scopes),
                       credits=body.credits, rate_per_minute=body.rate_per_minute,
                       max_streams=body.max_streams,
                       expires_at=ops.expiry(body.expires_at, body.expires_in))
    return await ops.create_key(_store(_runtime(request), "auth", "key store"), spec, actor)


@get(f"{PREFIX}/keys", summary="List API keys (never their secrets)", responses=ERRORS,
     tags=TAGS)
async def list_keys(request: Request, owner: FromQuery[str | None] = None) -> list[ops.KeyInfo]:
    actor = await _admit(request)
    return await ops.list_keys(_store(_runtime(request), "auth", "key store"), actor, owner)


@get(f"{PREFIX}/keys/{{key_id:str}}", summary="One API key", responses=ERRORS, tags=TAGS)
async def get_key(request: Request, key_id: FromPath[str]) -> ops.KeyInfo:
    actor = await _admit(request)
    return await ops.get_key(_store(_runtime(request), "auth", "key store"), key_id, actor)


@post(f"{PREFIX}/keys/{{key_id:str}}/revoke", status_code=200, summary="Revoke an API key",
      responses=ERRORS, tags=TAGS)
async def revoke_key(request: Request, key_id: FromPath[str]) -> ops.KeyInfo:
    actor = await _admit(request)
    return await ops.revoke_key(_store(_runtime(request), "auth", "key store"), key_id, actor)


@post(f"{PREFIX}/keys/{{key_id:str}}/credits", status_code=200,
      summary="Add credits to a key (negative removes)", responses=ERRORS, tags=TAGS)
async def credit_key(request: Request, key_id: FromPath[str],
                     data: JSONBody[CreditChange]) -> ops.Balance:
    actor = await _admit(request)
    body = decode_body(await request.body(), CreditChange)
    return await ops.credit_key(_store(_runtime(request), "auth", "key store"), key_id,
                                body.amount, actor)


async def _usage(request: Request, key_id: str, since: str | None, until: str | None,
                 limit: int) -> ops.UsageReport:
    actor = await _admit(request)
    return await ops.key_usage(_store(_runtime(request), "auth", "key store"), key_id,
                               ops.period(since, until), actor, limit)


_PERIOD = ("`since` / `until`: ISO date or date-time (UTC unless it says otherwise), Unix "
           "seconds, or a duration before now (7d, 12h); `until` is excluded. Newest first.")


@get(f"{PREFIX}/keys/{{key_id:str}}/usage", summary="A key's usage in a period",
     description=_PERIOD, responses=ERRORS, tags=TAGS)
async def key_usage(request: Request, key_id: FromPath[str], since: FromQuery[str | None] = None,
                    until: FromQuery[str | None] = None,
                    limit: FromQuery[int] = 1000) -> ops.UsageReport:
    return await _usage(request, key_id, since, until, limit)


@get(f"{PREFIX}/keys/{{key_id:str}}/usage.csv", summary="A key's usage in a period, as CSV",
     description=_PERIOD, responses={**ERRORS, **CSV}, tags=TAGS)
async def key_usage_csv(request: Request, key_id: FromPath[str],
                        since: FromQuery[str | None] = None, until: FromQuery[str | None] = None,
                        limit: FromQuery[int] = 1000) -> Response[str]:
    report = await _usage(request, key_id, since, until, limit)
    return _csv(ops.usage_csv(report), f"usage-{key_id}.csv")


async def _sentences(request: Request, since: str | None, until: str | None,
                     limit: int) -> ops.SentenceExport:
    actor = await _admit(request)
    db = _store(_runtime(request), "storage", "sentence store")
    return await ops.export_sentences(db, ops.period(since, until), actor, limit)


@get(f"{PREFIX}/sentences", summary="Stored sentences of a period", description=_PERIOD,
     responses=ERRORS, tags=TAGS)
async def sentences(request: Request, since: FromQuery[str | None] = None,
                    until: FromQuery[str | None] = None,
                    limit: FromQuery[int] = 1000) -> ops.SentenceExport:
    return await _sentences(request, since, until, limit)


@get(f"{PREFIX}/sentences.csv", summary="Stored sentences of a period, as CSV",
     description=_PERIOD, responses={**ERRORS, **CSV}, tags=TAGS)
async def sentences_csv(request: Request, since: FromQuery[str | None] = None,
                        until: FromQuery[str | None] = None,
                        limit: FromQuery[int] = 1000) -> Response[str]:
    return _csv(ops.sentences_csv(await _sentences(request, since, until, limit)),
                "sentences.csv")


HANDLERS = [create_key, list_keys, get_key, revoke_key, credit_key, key_usage, key_usage_csv,
            sentences, sentences_csv]
