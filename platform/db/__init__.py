"""Databases for keys, credits, usage and sentence storage: one interface, three adapters.

Which one serves is chosen per plugin (``backend`` in ``[plugins.auth]`` / ``[plugins.storage]``):

- ``auto`` (default): PostgreSQL when ``DATABASE_URL`` is set, else Supabase when both
  ``SUPABASE_URL`` and ``SUPABASE_SERVICE_KEY`` are set, else the embedded SQLite file.
- ``sqlite``, ``postgres`` or ``supabase`` by name (the credentials still come from the
  environment, never from the configuration file).

The SQLite file defaults to ``$VEENA_DATA_DIR/veena.db`` (``~/.local/share/veena/veena.db``).
"""

from __future__ import annotations

import os
from pathlib import Path

from veena.platform.db.base import (ApiKey, Database, Reservation, SentenceRow, StoreUnavailable,
                                    UsageRow)
from veena.platform.errors import ConfigError

__all__ = ["ApiKey", "Database", "Reservation", "SentenceRow", "StoreUnavailable", "UsageRow",
           "BACKENDS", "data_dir", "open_database", "describe"]

BACKENDS = ("auto", "sqlite", "postgres", "supabase")


def data_dir() -> Path:
    """Where embedded state lives: ``$VEENA_DATA_DIR``, else ``$XDG_DATA_HOME/veena``."""
    if os.environ.get("VEENA_DATA_DIR"):
        return Path(os.environ["VEENA_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "veena"


def chosen_backend(backend: str) -> str:
    """The adapter ``backend`` resolves to with the current environment."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown database backend {backend!r}; choose from {list(BACKENDS)}")
    if backend != "auto":
        return backend
    if os.environ.get("DATABASE_URL"):
        return "postgres"
    if os.environ.get("SUPABASE_URL") and os.environ.get("SUPABASE_SERVICE_KEY"):
        return "supabase"
    return "sqlite"


def open_database(backend: str = "auto", sqlite_path: str | None = None, *,
                  pool_size: int = 5, pgbouncer: bool = False) -> Database:
    """An adapter (not yet connected; call ``await db.open()``)."""
    kind = chosen_backend(backend)
    if kind == "postgres":
        dsn = os.environ.get("DATABASE_URL")
        if not dsn:
            raise ConfigError("the postgres backend needs DATABASE_URL in the environment")
        from veena.platform.db.postgres import PostgresDatabase

        return PostgresDatabase(dsn, max_size=pool_size, statement_cache=not pgbouncer)
    if kind == "supabase":
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
    from veena.platform.db.sqlite import SqliteDatabase

    return SqliteDatabase(Path(sqlite_path) if sqlite_path else data_dir() / "veena.db")


def describe(db: Database) -> str:
    """Where ``db`` points, without credentials (for logs and the CLI)."""
    if db.name == "sqlite":
        return f"sqlite:{db.path}"  # type: ignore[attr-defined]
    if db.name == "postgres":
        from urllib.parse import urlsplit

        u = urlsplit(db.dsn)  # type: ignore[attr-defined]
        return f"postgres://{u.hostname or 'localhost'}{':' + str(u.port) if u.port else ''}{u.path}"
    return f"supabase:{getattr(db, 'url', '?')}"
