"""Stores for keys, credits, usage and sentences: three interfaces, adapters chosen by name.

- ``KeyStore`` (``keys``): API keys, for authentication and ``veena keys``.
- ``CreditLedger`` (``ledger``): a key store whose keys carry balances: holds, settlements and
  usage rows. The auth plugin asks for one.
- ``SentenceStore`` (``sentences``): finished requests' records. The storage plugin asks for
  one.

The built-in adapters (``sqlite``, ``postgres``, ``supabase``) implement all three over one
schema (``Database``). Which one serves is chosen per plugin (``backend`` in
``[plugins.auth]`` / ``[plugins.storage]``):

- ``auto`` (default): PostgreSQL when ``DATABASE_URL`` is set, else Supabase when both
  ``SUPABASE_URL`` and ``SUPABASE_SERVICE_KEY`` are set, else the embedded SQLite file.
- ``sqlite``, ``postgres`` or ``supabase`` by name (the credentials still come from the
  environment, never from the configuration file).
- ``"package.module:factory"``: a third party's store, ``factory(BackendSettings)``, which
  needs to implement only the interface of the plugin it serves.

The SQLite file defaults to ``$VEENA_DATA_DIR/veena.db`` (``~/.local/share/veena/veena.db``).
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from veena.platform.db.base import Store, StoreUnavailable
from veena.platform.db.keys import ApiKey, KeyStore
from veena.platform.db.ledger import CreditLedger, Reservation, UsageRow
from veena.platform.db.sentences import SentenceRow, SentenceStore
from veena.platform.errors import ConfigError

__all__ = ["ApiKey", "BACKENDS", "BackendSettings", "CreditLedger", "Database", "KeyStore",
           "Reservation", "SentenceRow", "SentenceStore", "Store", "StoreUnavailable",
           "UsageRow", "check_backend", "chosen_backend", "data_dir", "describe",
           "open_database"]

BACKENDS = ("auto", "sqlite", "postgres", "supabase")
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
S = TypeVar("S", bound=Store)


class Database(CreditLedger, SentenceStore):
    """Keys, credits, usage and sentences behind one connection: the built-in adapters."""


@dataclass(frozen=True, slots=True)
class BackendSettings:
    """What a plugin tells the store it opens (credentials come from the environment)."""

    sqlite_path: Path
    pool_size: int = 5
    pgbouncer: bool = False
    """PostgreSQL behind PgBouncer in transaction mode: no prepared-statement cache."""


def data_dir() -> Path:
    """Where embedded state lives: ``$VEENA_DATA_DIR``, else ``$XDG_DATA_HOME/veena``."""
    if os.environ.get("VEENA_DATA_DIR"):
        return Path(os.environ["VEENA_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "veena"


def check_backend(backend: str) -> str:
    """``backend`` when it names a built-in adapter or a ``module:factory``; else ValueError."""
    if backend in BACKENDS or _FACTORY.match(backend):
        return backend
    raise ValueError(f"backend must be one of {list(BACKENDS)} or 'package.module:factory'")


def chosen_backend(backend: str) -> str:
    """The adapter ``backend`` resolves to with the current environment."""
    try:
        check_backend(backend)
    except ValueError as exc:
        raise ConfigError(f"unknown database backend {backend!r}: {exc}") from None
    if backend != "auto":
        return backend
    if os.environ.get("DATABASE_URL"):
        return "postgres"
    if os.environ.get("SUPABASE_URL") and os.environ.get("SUPABASE_SERVICE_KEY"):
        return "supabase"
    return "sqlite"


def open_database(backend: str = "auto", sqlite_path: str | None = None, *,
                  pool_size: int = 5, pgbouncer: bool = False,
                  need: type[S] = Store) -> S:  # type: ignore[assignment]
    """The store ``backend`` selects (not yet connected; call ``await store.open()``); a
    ConfigError when it does not implement ``need``, the interface its caller uses."""
    settings = BackendSettings(Path(sqlite_path) if sqlite_path else data_dir() / "veena.db",
                               pool_size=pool_size, pgbouncer=pgbouncer)
    kind = chosen_backend(backend)
    store = _factory(kind)(settings)
    if not isinstance(store, need):
        raise ConfigError(f"the {kind!r} store is not a {need.__name__}: it cannot serve here")
    return store


def _factory(kind: str):
    if ":" in kind:
        module, _, attr = kind.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"store backend {kind!r} cannot be loaded: {exc}") from exc
    return {"sqlite": _sqlite, "postgres": _postgres, "supabase": _supabase}[kind]


def _sqlite(settings: BackendSettings) -> Database:
    from veena.platform.db.sqlite import SqliteDatabase

    return SqliteDatabase(settings.sqlite_path)


def _postgres(settings: BackendSettings) -> Database:
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        raise ConfigError("the postgres backend needs DATABASE_URL in the environment")
    from veena.platform.db.postgres import PostgresDatabase

    return PostgresDatabase(dsn, max_size=settings.pool_size,
                            statement_cache=not settings.pgbouncer)


def _supabase(settings: BackendSettings) -> Database:
    url, key = os.environ.get("SUPABASE_URL"), os.environ.get("SUPABASE_SERVICE_KEY")
    if not (url and key):
        raise ConfigError("the supabase backend needs SUPABASE_URL and SUPABASE_SERVICE_KEY "
                          "in the environment")
    try:
        import supabase  # noqa: F401
    except ImportError as exc:
        raise ConfigError("the supabase backend needs the `supabase` package: "
                          "pip install 'veena[supabase]'") from exc
    from veena.platform.db.supabase import SupabaseDatabase

    return SupabaseDatabase(url, key)


def describe(store: Store) -> str:
    """Where ``store`` points, without credentials (for logs and the CLI)."""
    return store.describe()
