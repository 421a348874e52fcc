"""Key and data administration: the one implementation behind ``veena keys`` / ``veena db
export`` and the admin routes (``plugins/admin``).

Each operation takes the store it works on (the auth plugin's ``Database``; for sentences the
storage plugin's) and an ``Actor`` (who asks: an admin key, or a shell user), logs one audit
event (``veena.audit``: who, what, on which key; never a secret, never user text) and raises
``VeenaError`` with a stable code when it cannot be done (the CLI prints it, the routes send it).
"""

from __future__ import annotations

import csv
import datetime as dt
import getpass
import io
import logging
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from veena.platform.db import ApiKey, Database, SentenceRow, UsageRow
from veena.platform.errors import VeenaError, echo
from veena.plugins.auth.keys import new_key

audit = logging.getLogger("veena.audit")

ADMIN_SCOPE = "admin"
"""The scope the admin routes require (``*`` grants it too)."""
SCOPE = re.compile(r"^(\*|[a-z][a-z0-9_.:-]{0,31})$")
MAX_ROWS = 100_000
"""Most usage or sentence rows one read scans (newest first) to find a period's."""
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class Actor(msgspec.Struct, frozen=True):
    """Who performs an operation, as the audit log names it (never a secret)."""

    kind: str
    """``key`` (an admin key over HTTP) or ``cli`` (a shell user)."""
    id: str
    """The key's id, or the shell user's name."""
    prefix: str | None = None
    """The key's first 8 characters (``vk_`` + 5), to match a key a person holds."""
    owner: str | None = None

    @classmethod
    def shell(cls) -> Actor:
        try:
            user = getpass.getuser()
        except Exception:  # noqa: BLE001 - no user name in a bare container
            user = "unknown"
        return cls("cli", user)


class KeySpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What a new key is: ``POST /v1/admin/keys``'s body and ``veena keys create``'s options."""

    owner: str
    name: str = ""
    scopes: list[str] = msgspec.field(default_factory=lambda: ["tts"])
    credits: int | None = None
    """Starting balance; None: not metered."""
    rate_per_minute: int | None = None
    max_streams: int | None = None
    expires_at: float | None = None
    """Unix time; None: never."""


class Period(msgspec.Struct, frozen=True):
    """``[since, until)`` in Unix seconds; None: unbounded."""

    since: float | None = None
    until: float | None = None

    def holds(self, ts: float | None) -> bool:
        ts = ts or 0.0
        return (self.since is None or ts >= self.since) and (self.until is None or ts < self.until)


class UsageTotals(msgspec.Struct):
    requests: int
    chars: int
    audio_seconds: float
    credits: int


class UsageReport(msgspec.Struct):
    """A key's usage rows in a period (newest first) and their totals."""

    key_id: str
    since: float | None
    until: float | None
    rows: list[UsageRow]
    totals: UsageTotals
    truncated: bool
    """True when more rows of the period may exist than were read (``limit`` or ``MAX_ROWS``)."""


class SentenceExport(msgspec.Struct):
    """Stored sentences of a period (newest first)."""

    since: float | None
    until: float | None
    rows: list[SentenceRow]
    truncated: bool


class KeyInfo(msgspec.Struct):
    """A key as listed: never its secret or hash; ``state`` is active, revoked or expired."""

    id: str
    prefix: str
    owner: str
    name: str
    scopes: list[str]
    created_at: float
    expires_at: float | None
    revoked: bool
    state: str
    rate_per_minute: int | None
    max_streams: int | None
    credits: int | None


class CreatedKey(msgspec.Struct):
    """A new key: ``key`` is its secret, shown this once."""

    key: str
    info: KeyInfo


class Balance(msgspec.Struct):
    key_id: str
    credits: int


# --- parsing ------------------------------------------------------------------------------------

def _bad(param: str, message: str) -> VeenaError:
    return VeenaError("invalid_request", message, 400, param=param)


def parse_instant(value: str | float | None, param: str, *, past: bool = True) -> float | None:
    """Unix time from seconds, an ISO date or date-time (UTC unless it says otherwise), or a
    duration (``90d``, ``12h``, ``30m``, ``3600s``) before now (``past``) or after it."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    m = _DURATION.match(text)
    if m:
        delta = float(m.group(1)) * _UNITS[m.group(2)]
        return time.time() - delta if past else time.time() + delta
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise _bad(param, f"`{param}` {echo(text)}: expected an ISO date like 2027-01-31, Unix "
                   "seconds, or a duration like 90d, 12h, 30m") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def expiry(expires: str | float | None, expires_in: str | None) -> float | None:
    """Unix time of ``expires`` (an ISO date, date-time or Unix seconds) or ``expires_in``
    (90d, 12h, 30m, 3600s from now)."""
    if expires is not None and expires_in:
        raise _bad("expires_in", "give expires or expires_in, not both")
    if expires_in:
        if not _DURATION.match(expires_in.strip()):
            raise _bad("expires_in", f"`expires_in` {echo(expires_in)}: expected a number and "
                       "s, m, h, d or w")
        return parse_instant(expires_in, "expires_in", past=False)
    return parse_instant(expires, "expires")


def period(since: str | float | None, until: str | float | None) -> Period:
    p = Period(parse_instant(since, "since"), parse_instant(until, "until"))
    if p.since is not None and p.until is not None and p.until <= p.since:
        raise _bad("until", "`until` must be after `since`")
    return p


def scopes_of(value: str | Iterable[str]) -> list[str]:
    """Scopes from a comma-separated string or a list, checked for shape."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out = list(dict.fromkeys(s.strip() for s in items if s.strip()))
    if not out:
        raise _bad("scopes", "a key needs at least one scope (tts, admin, * ...)")
    for s in out:
        if not SCOPE.match(s):
            raise _bad("scopes", f"scope {echo(s)}: lower-case letters, digits and _.:- "
                       "(at most 32), or *")
    return out


# --- views ---------------------------------------------------------------------------------------

def key_info(k: ApiKey, now: float | None = None) -> KeyInfo:
    now = time.time() if now is None else now
    state = ("revoked" if k.revoked else
             "expired" if k.expires_at is not None and k.expires_at <= now else "active")
    return KeyInfo(id=k.id, prefix=k.prefix, owner=k.owner, name=k.name, scopes=list(k.scopes),
                   created_at=k.created_at, expires_at=k.expires_at, revoked=k.revoked,
                   state=state, rate_per_minute=k.rate_per_minute, max_streams=k.max_streams,
                   credits=k.credits)


def to_csv(rows: Sequence[msgspec.Struct], columns: Sequence[str]) -> str:
    """``rows`` as CSV with a header line; text fields are quoted as needed."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if (v := getattr(row, c)) is None else v for c in columns])
    return out.getvalue()


def usage_csv(report: UsageReport) -> str:
    return to_csv(report.rows, UsageRow.__struct_fields__)


def sentences_csv(export: SentenceExport) -> str:
    return to_csv(export.rows, SentenceRow.__struct_fields__)


def _log(actor: Actor, action: str, **fields: Any) -> None:
    audit.info(f"admin.{action}", extra={
        "actor": actor.kind, "actor_id": actor.id, "actor_prefix": actor.prefix,
        "actor_owner": actor.owner, **{k: v for k, v in fields.items() if v is not None}})


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_ROWS:
        raise _bad("limit", f"`limit` must be 1-{MAX_ROWS}")
    return limit


def _scan(when: Period, limit: int) -> int:
    """How many rows to read newest first: ``limit`` (+1, to tell whether there are more)
    when the period runs to now, else up to ``MAX_ROWS`` to reach back to it."""
    return min(limit + 1, MAX_ROWS) if when.until is None else MAX_ROWS


def _window(scanned: list[Any], when: Period, limit: int) -> tuple[list[Any], bool]:
    """The period's rows among ``scanned`` (newest first), at most ``limit``, and whether the
    period may hold more than that (more matched, or the scan stopped before its start)."""
    rows = [r for r in scanned if when.holds(r.created_at)]
    cut_short = len(scanned) >= MAX_ROWS and (when.since is None
                                               or (scanned[-1].created_at or 0) >= when.since)
    return rows[:limit], len(rows) > limit or cut_short


# --- operations -----------------------------------------------------------------------------------

async def create_key(db: Database, spec: KeySpec, actor: Actor) -> CreatedKey:
    """A new key in the store; its secret is in the result only."""
    owner = spec.owner.strip()
    if not owner or len(owner) > 200:
        raise _bad("owner", "`owner` is required (at most 200 characters)")
    if len(spec.name) > 200:
        raise _bad("name", "`name` is at most 200 characters")
    for field in ("credits", "rate_per_minute", "max_streams"):
        value = getattr(spec, field)
        if value is not None and value < (0 if field == "credits" else 1):
            raise _bad(field, f"`{field}` must be at least {0 if field == 'credits' else 1}")
    scopes = scopes_of(spec.scopes)
    secret, record = new_key(owner, name=spec.name, scopes=tuple(scopes),
                             expires_at=spec.expires_at, credits=spec.credits,
                             rate_per_minute=spec.rate_per_minute, max_streams=spec.max_streams)
    await db.create_key(record)
    _log(actor, "key_created", key_id=record.id, key_prefix=record.prefix, owner=owner,
         scopes=scopes, credits=spec.credits, expires_at=spec.expires_at)
    return CreatedKey(secret, key_info(record))


async def list_keys(db: Database, actor: Actor, owner: str | None = None) -> list[KeyInfo]:
    """Every key (revoked ones too), oldest first, never a secret."""
    keys = await db.list_keys(owner or None)
    _log(actor, "keys_listed", owner=owner, count=len(keys))
    now = time.time()
    return [key_info(k, now) for k in keys]


async def get_key(db: Database, key_id: str, actor: Actor) -> KeyInfo:
    key = await db.get_key(key_id)
    if key is None:
        raise _no_key(key_id)
    _log(actor, "key_read", key_id=key_id)
    return key_info(key)


def _no_key(key_id: str) -> VeenaError:
    return VeenaError("key_not_found", f"no key {echo(key_id)}", 404, param="key_id")


async def revoke_key(db: Database, key_id: str, actor: Actor) -> KeyInfo:
    """Revokes a key (running servers refuse it within about a second)."""
    if not await db.revoke_key(key_id):
        raise _no_key(key_id)
    _log(actor, "key_revoked", key_id=key_id)
    return await get_key(db, key_id, actor)


async def credit_key(db: Database, key_id: str, amount: int, actor: Actor) -> Balance:
    """Adds ``amount`` credits (negative removes; never below zero)."""
    try:
        balance = await db.add_credits(key_id, amount)
    except ValueError as exc:
        raise VeenaError("insufficient_credits", str(exc), 400, param="amount") from exc
    if balance is None:
        raise _no_key(key_id)
    _log(actor, "key_credited", key_id=key_id, amount=amount, balance=balance)
    return Balance(key_id, balance)


async def key_usage(db: Database, key_id: str, when: Period, actor: Actor,
                    limit: int = 1000) -> UsageReport:
    """A key's usage rows in ``when`` (newest first, at most ``limit``) and their totals."""
    _limit(limit)
    if await db.get_key(key_id) is None:
        raise _no_key(key_id)
    rows, truncated = _window(await db.usage(key_id, _scan(when, limit)), when, limit)
    totals = UsageTotals(requests=len(rows), chars=sum(u.chars for u in rows),
                         audio_seconds=round(sum(u.audio_seconds for u in rows), 3),
                         credits=sum(u.credits for u in rows))
    _log(actor, "usage_read", key_id=key_id, since=when.since, until=when.until, rows=len(rows))
    return UsageReport(key_id, when.since, when.until, rows, totals, truncated)


async def export_sentences(db: Database, when: Period, actor: Actor,
                           limit: int = 1000) -> SentenceExport:
    """Stored sentences of ``when`` (newest first, at most ``limit``)."""
    _limit(limit)
    rows, truncated = _window(await db.sentences(_scan(when, limit)), when, limit)
    _log(actor, "sentences_exported", since=when.since, until=when.until, rows=len(rows))
    return SentenceExport(when.since, when.until, rows, truncated)
