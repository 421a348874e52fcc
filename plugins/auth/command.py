"""``veena keys create|list|revoke|credit|usage``, ``veena db migrate|replay|export``.

They use the store the ``auth`` plugin uses (sentences: the ``storage`` plugin's):
``[plugins.auth] backend`` / ``sqlite_path`` from ``--config``, credentials from the environment
(``DATABASE_URL``, ``SUPABASE_URL`` + ``SUPABASE_SERVICE_KEY``). What they do is
``veena.plugins.auth.operations``, the code the admin routes run too. A new key is printed
once, on standard output, and never again.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from typing import Any

import msgspec

from veena.platform.cli import config_from_args
from veena.platform.config import plugin_settings
from veena.platform.errors import ConfigError, VeenaError
from veena.plugins.auth import operations as ops


def _database(args: argparse.Namespace):
    from veena.platform.db import CreditLedger, open_database
    from veena.plugins.auth import Config as AuthConfig

    cfg = config_from_args(args)
    auth = plugin_settings("auth", AuthConfig, cfg.plugins.get("auth", {}))
    return open_database(auth.backend, auth.sqlite_path, pool_size=1, pgbouncer=auth.pgbouncer,
                         need=CreditLedger)


def _storage_database(args: argparse.Namespace):
    from veena.platform.db import SentenceStore, open_database
    from veena.plugins.storage import Config as StorageConfig

    cfg = plugin_settings("storage", StorageConfig,
                          config_from_args(args).plugins.get("storage", {}))
    return open_database(cfg.backend, cfg.sqlite_path, pool_size=1, pgbouncer=cfg.pgbouncer,
                         need=SentenceStore)


def _run(args: argparse.Namespace, work, database=None) -> int:
    from veena.platform.db import StoreUnavailable, describe

    async def main() -> int:
        db = database or _database(args)
        try:
            await db.open()
            await db.migrate()
            return await work(db)
        except StoreUnavailable as exc:
            print(f"veena: the key store {describe(db)} cannot be reached: {exc}", file=sys.stderr)
            return 1
        except VeenaError as exc:
            print(f"veena: {exc.message}", file=sys.stderr)
            return 2 if exc.code == "invalid_request" else 1  # 2: bad arguments, as argparse
        finally:
            await db.close()
    return asyncio.run(main())


def parse_expiry(expires: str | None, expires_in: str | None) -> float | None:
    """Unix time of ``--expires`` (ISO date or date-time, UTC unless it says otherwise) or
    ``--expires-in`` (e.g. 90d, 12h, 30m, 3600s)."""
    try:
        return ops.expiry(expires, expires_in)
    except VeenaError as exc:
        raise ConfigError(exc.message.replace("`expires_in`", "--expires-in")
                          .replace("`expires`", "--expires")
                          .replace("expires or expires_in", "--expires or --expires-in")) from exc


def _when(ts: float | None) -> str:
    return "never" if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _keys_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    c = sub.add_parser("create", help="create a key and print it once")
    c.add_argument("--owner", required=True, help="who the key belongs to (user or account id)")
    c.add_argument("--name", default="", help="a label, e.g. the app that uses it")
    c.add_argument("--scopes", "--scope", dest="scopes", default="tts",
                   help="comma-separated scopes (default: tts; admin: the admin API; *: all)")
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
    u = sub.add_parser("usage", help="a key's usage rows, newest first")
    u.add_argument("key_id")
    u.add_argument("--limit", type=int, default=20)
    _period_args(u)
    out = u.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="JSON lines")
    out.add_argument("--csv", action="store_true", help="CSV with a header line")
    for sp in (c, ls, r, cr, u):
        _config_arg(sp)


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=argparse.SUPPRESS,
                   help="TOML configuration file (default: $VEENA_CONFIG)")


def _period_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", help="from: ISO date or date-time, Unix seconds, or 7d (ago)")
    p.add_argument("--until", help="up to (not including); same forms")


def keys(args: argparse.Namespace) -> int:
    """Manages API keys: create, list, revoke, credit, usage."""
    return _run(args, globals()[f"_{args.action}"](args))


def _create(args: argparse.Namespace):
    spec = ops.KeySpec(owner=args.owner, name=args.name, scopes=ops.scopes_of(args.scopes)
                       if args.scopes.strip() else [], credits=args.credits,
                       rate_per_minute=args.rpm, max_streams=args.streams,
                       expires_at=parse_expiry(args.expires, args.expires_in))
    if args.credits is not None and args.credits < 0:
        raise ConfigError("--credits must not be negative")

    async def work(db) -> int:
        made = await ops.create_key(db, spec, ops.Actor.shell())
        k = made.info
        print(made.key)
        print(f"created {k.id} for {k.owner!r}: scopes {','.join(k.scopes)}, credits "
              f"{'unmetered' if k.credits is None else k.credits}, expires "
              f"{_when(k.expires_at)}. Keep the key now: it is not shown again.", file=sys.stderr)
        return 0
    return work


def _list(args: argparse.Namespace):
    async def work(db) -> int:
        keys = await ops.list_keys(db, ops.Actor.shell(), args.owner)
        if args.json:
            for k in keys:
                print(_json(k))
            return 0
        print(f"{'id':<21} {'prefix':<9} {'owner':<16} {'name':<14} {'credits':>10} "
              f"{'rpm':>5} {'streams':>7}  {'expires':<20} state")
        for k in keys:
            print(f"{k.id:<21} {k.prefix:<9} {k.owner[:16]:<16} {k.name[:14]:<14} "
                  f"{'-' if k.credits is None else k.credits:>10} "
                  f"{'-' if k.rate_per_minute is None else k.rate_per_minute:>5} "
                  f"{'-' if k.max_streams is None else k.max_streams:>7}  "
                  f"{_when(k.expires_at):<20} {k.state}")
        return 0
    return work


def _revoke(args: argparse.Namespace):
    async def work(db) -> int:
        await ops.revoke_key(db, args.key_id, ops.Actor.shell())
        print(f"revoked {args.key_id}", file=sys.stderr)
        return 0
    return work


def _credit(args: argparse.Namespace):
    async def work(db) -> int:
        print((await ops.credit_key(db, args.key_id, args.amount, ops.Actor.shell())).credits)
        return 0
    return work


def _usage(args: argparse.Namespace):
    async def work(db) -> int:
        report = await ops.key_usage(db, args.key_id, ops.period(args.since, args.until),
                                     ops.Actor.shell(), args.limit)
        if args.csv:
            sys.stdout.write(ops.usage_csv(report))
            return 0
        for u in report.rows:
            if args.json:
                print(_json(u))
            else:
                print(f"{_when(u.created_at)}  {u.request_id[:32]:<32} {u.outcome:<9} "
                      f"{u.chars:>6} chars {u.audio_seconds:>8.2f} s  {u.format:<5} "
                      f"{u.speaker:<8} {u.credits:>6} credits (held {u.held})")
        if report.truncated:
            print("veena: more rows match; raise --limit or narrow --since/--until",
                  file=sys.stderr)
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
    e = sub.add_parser("export", help="stored sentences of a period, newest first (JSON lines)")
    _config_arg(e)
    _period_args(e)
    e.add_argument("--limit", type=int, default=1000)
    e.add_argument("--csv", action="store_true", help="CSV with a header line")


def db(args: argparse.Namespace) -> int:
    """Database maintenance: migrate, replay, export."""
    from veena.platform.db import SentenceStore, describe, open_database

    if args.action == "replay":
        return _replay(args)
    if args.action == "export":
        return _run(args, _export(args), _storage_database(args))

    async def main() -> int:
        if args.plugin == "storage":
            from veena.plugins.storage import Config as StorageConfig

            cfg = plugin_settings("storage", StorageConfig, config_from_args(args).plugins.get("storage", {}))
            database = open_database(cfg.backend, cfg.sqlite_path, pool_size=1, need=SentenceStore)
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


def _export(args: argparse.Namespace):
    async def work(db) -> int:
        export = await ops.export_sentences(db, ops.period(args.since, args.until),
                                            ops.Actor.shell(), args.limit)
        if args.csv:
            sys.stdout.write(ops.sentences_csv(export))
        else:
            for row in export.rows:
                print(_json(row))
        if export.truncated:
            print("veena: more rows match; raise --limit or narrow --since/--until",
                  file=sys.stderr)
        return 0
    return work


def _replay(args: argparse.Namespace) -> int:
    """``veena db replay``: rows in ``<spool_dir>/<queue>.rejected`` written again."""
    from pathlib import Path

    from veena.platform.db import (CreditLedger, SentenceStore, StoreUnavailable, UsageRow,
                                   data_dir, describe, open_database)
    from veena.platform.db.queue import replay_rejected
    from veena.platform.runtime import RequestRecord

    plugin = "storage" if args.queue == "sentences" else "auth"
    if plugin == "storage":
        from veena.plugins.storage import Config as PluginConfig
    else:
        from veena.plugins.auth import Config as PluginConfig  # type: ignore[assignment]
    cfg = plugin_settings(plugin, PluginConfig, config_from_args(args).plugins.get(plugin, {}))
    spool = Path(cfg.spool_dir) if cfg.spool_dir else data_dir() / "spool"
    database = open_database(cfg.backend, cfg.sqlite_path, pool_size=1,
                             need=SentenceStore if plugin == "storage" else CreditLedger)

    async def main() -> int:
        try:
            await database.open()
            if database.name != "supabase":
                await database.migrate()
            if args.queue == "sentences":
                done = await replay_rejected(spool / "sentences.rejected",
                                             database.write_sentences, RequestRecord)
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
                                  ("db", _db_args, db, 'Database maintenance: migrate, replay, export.')):
        p = subparsers.add_parser(name, help=doc)
        setup(p)
        p.set_defaults(func=run)
