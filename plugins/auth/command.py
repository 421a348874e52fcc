"""``veena keys create|list|revoke|credit|usage`` and ``veena db migrate``.

They use the store the ``auth`` plugin uses: ``[plugins.auth] backend`` / ``sqlite_path`` from
``--config``, credentials from the environment (``DATABASE_URL``, ``SUPABASE_URL`` +
``SUPABASE_SERVICE_KEY``). A new key is printed once, on standard output, and never again.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import sys
import time
from typing import Any

from veena.platform.cli import config_from_args
from veena.platform.config import plugin_settings
from veena.platform.errors import ConfigError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _database(args: argparse.Namespace):
    from veena.platform.db import open_database
    from veena.plugins.auth import Config as AuthConfig

    cfg = config_from_args(args)
    auth = plugin_settings("auth", AuthConfig, cfg.plugins.get("auth", {}))
    return open_database(auth.backend, auth.sqlite_path, pool_size=1, pgbouncer=auth.pgbouncer)


def _run(args: argparse.Namespace, work) -> int:
    from veena.platform.db import StoreUnavailable, describe

    async def main() -> int:
        db = _database(args)
        try:
            await db.open()
            await db.migrate()
            return await work(db)
        except StoreUnavailable as exc:
            print(f"veena: the key store {describe(db)} cannot be reached: {exc}", file=sys.stderr)
            return 1
        finally:
            await db.close()
    return asyncio.run(main())


def parse_expiry(expires: str | None, expires_in: str | None) -> float | None:
    """Unix time of ``--expires`` (ISO date or date-time, UTC unless it says otherwise) or
    ``--expires-in`` (e.g. 90d, 12h, 30m, 3600s)."""
    if expires and expires_in:
        raise ConfigError("give --expires or --expires-in, not both")
    if expires_in:
        m = _DURATION.match(expires_in.strip())
        if not m:
            raise ConfigError(f"--expires-in {expires_in!r}: expected a number and s, m, h, d or w")
        return time.time() + float(m.group(1)) * _UNITS[m.group(2)]
    if expires:
        try:
            when = dt.datetime.fromisoformat(expires)
        except ValueError as exc:
            raise ConfigError(f"--expires {expires!r}: expected an ISO date like 2027-01-31") from exc
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return when.timestamp()
    return None


def _when(ts: float | None) -> str:
    return "never" if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _key_dict(k: Any) -> dict[str, Any]:
    return {"id": k.id, "prefix": k.prefix, "owner": k.owner, "name": k.name,
            "scopes": list(k.scopes), "created_at": k.created_at, "expires_at": k.expires_at,
            "revoked": k.revoked, "rate_per_minute": k.rate_per_minute,
            "max_streams": k.max_streams, "credits": k.credits}


def _keys_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    c = sub.add_parser("create", help="create a key and print it once")
    c.add_argument("--owner", required=True, help="who the key belongs to (user or account id)")
    c.add_argument("--name", default="", help="a label, e.g. the app that uses it")
    c.add_argument("--scopes", default="tts", help="comma-separated scopes (default: tts)")
    c.add_argument("--credits", type=int, help="starting balance (default: not metered)")
    c.add_argument("--rpm", type=int, help="requests per minute (default: the server's)")
    c.add_argument("--streams", type=int, help="concurrent streams (default: the server's)")
    c.add_argument("--expires", help="expiry, ISO date or date-time (UTC unless given)")
    c.add_argument("--expires-in", help="expiry from now: 90d, 12h, 30m ...")
    ls = sub.add_parser("list", help="list keys (never the secrets)")
    ls.add_argument("--owner", help="only this owner's keys")
    ls.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    r = sub.add_parser("revoke", help="revoke a key (running servers refuse it within about a second)")
    r.add_argument("key_id")
    cr = sub.add_parser("credit", help="add credits to a key (negative to remove)")
    cr.add_argument("key_id")
    cr.add_argument("amount", type=int)
    u = sub.add_parser("usage", help="a key's latest usage rows")
    u.add_argument("key_id")
    u.add_argument("--limit", type=int, default=20)
    u.add_argument("--json", action="store_true")
    for sp in (c, ls, r, cr, u):
        sp.add_argument("--config", default=argparse.SUPPRESS,
                        help="TOML configuration file (default: $VEENA_CONFIG)")


def keys(args: argparse.Namespace) -> int:
    """Manages API keys: create, list, revoke, credit, usage."""
    return _run(args, globals()[f"_{args.action}"](args))


def _create(args: argparse.Namespace):
    from veena.plugins.auth.keys import new_key

    scopes = tuple(s.strip() for s in args.scopes.split(",") if s.strip())
    expires_at = parse_expiry(args.expires, args.expires_in)
    if args.credits is not None and args.credits < 0:
        raise ConfigError("--credits must not be negative")
    secret, record = new_key(args.owner, name=args.name, scopes=scopes, expires_at=expires_at,
                             credits=args.credits, rate_per_minute=args.rpm,
                             max_streams=args.streams)

    async def work(db) -> int:
        await db.create_key(record)
        print(secret)
        print(f"created {record.id} for {record.owner!r}: scopes {','.join(scopes)}, credits "
              f"{'unmetered' if record.credits is None else record.credits}, expires "
              f"{_when(expires_at)}. Keep the key now: it is not shown again.", file=sys.stderr)
        return 0
    return work


def _list(args: argparse.Namespace):
    async def work(db) -> int:
        keys = await db.list_keys(args.owner)
        if args.json:
            for k in keys:
                print(json.dumps(_key_dict(k)))
            return 0
        print(f"{'id':<21} {'prefix':<9} {'owner':<16} {'name':<14} {'credits':>10} "
              f"{'rpm':>5} {'streams':>7}  {'expires':<20} state")
        now = time.time()
        for k in keys:
            state = ("revoked" if k.revoked else
                     "expired" if k.expires_at is not None and k.expires_at <= now else "active")
            print(f"{k.id:<21} {k.prefix:<9} {k.owner[:16]:<16} {k.name[:14]:<14} "
                  f"{'-' if k.credits is None else k.credits:>10} "
                  f"{'-' if k.rate_per_minute is None else k.rate_per_minute:>5} "
                  f"{'-' if k.max_streams is None else k.max_streams:>7}  "
                  f"{_when(k.expires_at):<20} {state}")
        return 0
    return work


def _revoke(args: argparse.Namespace):
    async def work(db) -> int:
        if not await db.revoke_key(args.key_id):
            print(f"veena: no key {args.key_id!r}", file=sys.stderr)
            return 1
        print(f"revoked {args.key_id}", file=sys.stderr)
        return 0
    return work


def _credit(args: argparse.Namespace):
    async def work(db) -> int:
        try:
            balance = await db.add_credits(args.key_id, args.amount)
        except ValueError as exc:
            print(f"veena: {exc}", file=sys.stderr)
            return 1
        if balance is None:
            print(f"veena: no key {args.key_id!r}", file=sys.stderr)
            return 1
        print(balance)
        return 0
    return work


def _usage(args: argparse.Namespace):
    import msgspec

    async def work(db) -> int:
        rows = await db.usage(args.key_id, args.limit)
        for u in rows:
            if args.json:
                print(msgspec.json.encode(u).decode())
            else:
                print(f"{_when(u.created_at)}  {u.request_id[:32]:<32} {u.outcome:<9} "
                      f"{u.chars:>6} chars {u.audio_seconds:>8.2f} s  {u.format:<5} "
                      f"{u.speaker:<8} {u.credits:>6} credits (held {u.held})")
        return 0
    return work


def _db_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    m = sub.add_parser("migrate", help="apply the shipped schema migrations")
    m.add_argument("--config", default=argparse.SUPPRESS,
                   help="TOML configuration file (default: $VEENA_CONFIG)")
    m.add_argument("--plugin", choices=("auth", "storage"), default="auth",
                   help="whose database to migrate (default: auth's)")
    r = sub.add_parser("replay", help="write rows set aside as unwritable again (after a fix)")
    r.add_argument("--config", default=argparse.SUPPRESS,
                   help="TOML configuration file (default: $VEENA_CONFIG)")
    r.add_argument("--queue", choices=("sentences", "settlements"), default="sentences",
                   help="which set-aside file: storage's sentences or auth's settlements")


def db(args: argparse.Namespace) -> int:
    """Database maintenance: migrate, replay."""
    from veena.platform.db import describe, open_database

    if args.action == "replay":
        return _replay(args)

    async def main() -> int:
        if args.plugin == "storage":
            from veena.plugins.storage import Config as StorageConfig

            cfg = plugin_settings("storage", StorageConfig, config_from_args(args).plugins.get("storage", {}))
            database = open_database(cfg.backend, cfg.sqlite_path, pool_size=1)
        else:
            database = _database(args)
        if database.name == "supabase":
            print("veena: migrations run over SQL: set DATABASE_URL to the Supabase project's "
                  "PostgreSQL URL and run again", file=sys.stderr)
            return 2
        try:
            await database.open()
            applied = await database.migrate()
        finally:
            await database.close()
        print(f"{describe(database)}: applied {', '.join(applied) if applied else 'nothing (up to date)'}")
        return 0
    return asyncio.run(main())


def _replay(args: argparse.Namespace) -> int:
    """``veena db replay``: rows in ``<spool_dir>/<queue>.rejected`` written again."""
    from pathlib import Path

    from veena.platform.db import SentenceRow, StoreUnavailable, UsageRow, data_dir, describe, \
        open_database
    from veena.platform.db.queue import replay_rejected

    plugin = "storage" if args.queue == "sentences" else "auth"
    if plugin == "storage":
        from veena.plugins.storage import Config as PluginConfig
    else:
        from veena.plugins.auth import Config as PluginConfig  # type: ignore[assignment]
    cfg = plugin_settings(plugin, PluginConfig, config_from_args(args).plugins.get(plugin, {}))
    spool = Path(cfg.spool_dir) if cfg.spool_dir else data_dir() / "spool"
    database = open_database(cfg.backend, cfg.sqlite_path, pool_size=1)

    async def main() -> int:
        try:
            await database.open()
            if database.name != "supabase":
                await database.migrate()
            if args.queue == "sentences":
                done = await replay_rejected(spool / "sentences.rejected",
                                             database.write_sentences, SentenceRow)
            else:
                async def settle(rows: list[UsageRow]) -> None:
                    for row in rows:
                        await database.settle(row)
                done = await replay_rejected(spool / "settlements.rejected", settle, UsageRow)
        except StoreUnavailable as exc:
            print(f"veena: {describe(database)} cannot be reached: {exc}", file=sys.stderr)
            return 1
        finally:
            await database.close()
        print(f"{describe(database)}: {done[0]} row(s) written, {done[1]} still set aside "
              f"in {spool / (args.queue + '.rejected')}")
        return 0 if not done[1] else 3
    return asyncio.run(main())


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``veena keys`` and ``veena db``."""
    for name, setup, run, doc in (("keys", _keys_args, keys, 'Manages API keys: create, list, revoke, credit, usage.'),
                                  ("db", _db_args, db, 'Database maintenance: migrate, replay.')):
        p = subparsers.add_parser(name, help=doc)
        setup(p)
        p.set_defaults(func=run)
