"""The one interface every database adapter implements: API keys, credits, usage, sentences.

Adapters: ``sqlite`` (embedded default), ``postgres`` (asyncpg) and ``supabase`` (the Supabase
client over PostgREST). One contract test suite (``tests/integration/test_store_contract.py``)
runs over each. Credits are whole numbers (the credit rule rounds up), so balances are exact.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class StoreUnavailable(Exception):
    """The database cannot be reached right now (connection refused, server shutting down...).

    Callers treat it as transient: the key cache keeps its last view, writes go to the spool.
    Any other exception from an adapter is a real error (bad data, bad schema)."""


@dataclass(slots=True)
class ApiKey:
    """One API key as stored; the secret itself is never stored, only ``key_hash``."""

    id: str
    key_hash: str
    prefix: str
    owner: str
    name: str = ""
    scopes: tuple[str, ...] = ("tts",)
    created_at: float = field(default_factory=time.time)
    expires_at: float | None = None
    revoked: bool = False
    rate_per_minute: int | None = None
    max_streams: int | None = None
    credits: int | None = None
    """Balance; None means the key is not metered."""


class UsageRow(msgspec.Struct, kw_only=True):
    """What one request of a key used and was charged; ``id`` is its credit hold's id."""

    id: str
    key_id: str
    request_id: str
    created_at: float
    chars: int
    chars_requested: int
    audio_seconds: float
    format: str
    speaker: str
    synthesizer: str
    stream: bool
    outcome: str
    ttfb_ms: float | None
    total_ms: float
    credits: int
    held: int


class SentenceRow(msgspec.Struct, kw_only=True):
    """One request's text and metadata, as sentence storage keeps it (``id`` is unique per
    request, so a replayed write is a no-op)."""

    id: str
    request_id: str
    key_id: str | None
    created_at: float
    original_text: str
    normalized_text: str
    speaker: str
    synthesizer: str
    format: str
    sample_rate: int
    stream: bool
    chunks: int
    chars_requested: int
    chars_delivered: int
    audio_seconds: float
    bytes_sent: int
    ttfb_ms: float | None
    total_ms: float
    outcome: str
    error_code: str | None = None


SENTENCE_COLUMNS: tuple[str, ...] = SentenceRow.__struct_fields__
USAGE_COLUMNS: tuple[str, ...] = UsageRow.__struct_fields__


class Reservation(msgspec.Struct):
    """The result of a credit hold: ``ok`` False means the balance was short."""

    ok: bool
    balance: int | None


class Database(abc.ABC):
    """A key store, usage ledger and sentence sink behind one connection (pool)."""

    name: str = "?"

    @abc.abstractmethod
    async def open(self) -> None:
        """Connects (raises StoreUnavailable when the server is down)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def migrate(self) -> list[str]:
        """Applies migrations not yet applied; returns their names."""

    # --- keys -----------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_key(self, key: ApiKey) -> None: ...

    @abc.abstractmethod
    async def key_by_hash(self, key_hash: str) -> ApiKey | None: ...

    @abc.abstractmethod
    async def get_key(self, key_id: str) -> ApiKey | None: ...

    @abc.abstractmethod
    async def list_keys(self, owner: str | None = None) -> list[ApiKey]:
        """Every key (revoked ones too), oldest first."""

    async def key_version(self) -> tuple[Any, ...] | None:
        """A value that changes whenever a key is created, revoked or deleted (not when credits
        are used), cheap enough to poll a few times a second; None when this adapter has none
        (the key cache then only reloads every ``refresh_seconds``)."""
        return None

    @abc.abstractmethod
    async def revoke_key(self, key_id: str) -> bool:
        """Marks a key revoked; False when there is no such key."""

    @abc.abstractmethod
    async def add_credits(self, key_id: str, amount: int) -> int | None:
        """Adds ``amount`` (may be negative) atomically; returns the new balance, None when
        there is no such key. An unmetered key starts from zero."""

    # --- credits and usage ------------------------------------------------------------------
    @abc.abstractmethod
    async def reserve(self, key_id: str, hold_id: str, amount: int,
                      request_id: str) -> Reservation:
        """Takes ``amount`` from the balance atomically if it is there (never below zero)."""

    @abc.abstractmethod
    async def settle(self, usage: UsageRow) -> int | None:
        """Records ``usage`` and gives back ``held - credits`` of hold ``usage.id``, atomically
        and at most once per ``usage.id``. Returns the new balance when it changed."""

    @abc.abstractmethod
    async def usage(self, key_id: str, limit: int = 100) -> list[UsageRow]:
        """A key's usage rows, newest first."""

    @abc.abstractmethod
    async def renew_holds(self, hold_ids: list[str]) -> int:
        """Renews the lease of these holds (their streams are alive); returns how many exist."""

    @abc.abstractmethod
    async def release_stale_holds(self, older_than_s: float) -> int:
        """Gives back holds not renewed for ``older_than_s`` (their process died); returns how
        many. A hold's ``created_at`` is the start of its current lease."""

    # --- sentences --------------------------------------------------------------------------
    @abc.abstractmethod
    async def write_sentences(self, rows: list[SentenceRow]) -> None:
        """Stores a batch; rows whose ``id`` is already stored are skipped."""

    @abc.abstractmethod
    async def sentences(self, limit: int = 100, request_id: str | None = None) -> list[SentenceRow]:
        """Stored rows, newest first (for tests, the CLI and analysis)."""

    @abc.abstractmethod
    async def count_sentences(self) -> int: ...


def migration_files(dialect: str) -> list[tuple[str, str]]:
    """(version, SQL) of the shipped migrations for ``dialect`` ("sqlite" or "postgres")."""
    out = []
    for path in sorted(MIGRATIONS.glob(f"*.{dialect}.sql")):
        out.append((path.name.split(".")[0], path.read_text("utf-8")))
    return out
