"""What every store has: a connection's life, its migrations, and the one transient error.

The interfaces built on it (``keys.KeyStore``, ``ledger.CreditLedger``,
``sentences.SentenceStore``) are what the plugins ask for; an adapter implements one or more.
"""

from __future__ import annotations

import abc
from pathlib import Path

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class StoreUnavailable(Exception):
    """The database cannot be reached right now (connection refused, server shutting down...).

    Callers treat it as transient: the key cache keeps its last view, writes go to the spool.
    Any other exception from an adapter is a real error (bad data, bad schema)."""


class Store(abc.ABC):
    """A connection (pool) to one database."""

    name: str = "?"

    @abc.abstractmethod
    async def open(self) -> None:
        """Connects (raises StoreUnavailable when the server is down)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def migrate(self) -> list[str]:
        """Applies migrations not yet applied; returns their names (a store whose schema is
        managed elsewhere checks it is there and returns [])."""

    def describe(self) -> str:
        """Where this store points, without credentials (for logs and the CLI)."""
        return self.name


def migration_files(dialect: str) -> list[tuple[str, str]]:
    """(version, SQL) of the shipped migrations for ``dialect`` ("sqlite" or "postgres")."""
    out = []
    for path in sorted(MIGRATIONS.glob(f"*.{dialect}.sql")):
        out.append((path.name.split(".")[0], path.read_text("utf-8")))
    return out
