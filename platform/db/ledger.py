"""The credit ledger: balances on a key store's keys, holds on them, and usage rows.

Credits are whole numbers (the credit rule rounds up), so balances are exact.
"""

from __future__ import annotations

import abc
import time

import msgspec

from veena.platform.db.keys import KeyStore
from veena.platform.runtime import RequestRecord


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

    @classmethod
    def of(cls, record: RequestRecord, usage_id: str, key_id: str, credits: int = 0,
           held: int = 0) -> UsageRow:
        """The usage of a finished request, charged ``credits`` of a hold of ``held``."""
        return cls(id=usage_id, key_id=key_id, request_id=record.request_id,
                   created_at=record.created_at or time.time(), chars=record.chars_delivered,
                   chars_requested=record.chars_requested, audio_seconds=record.audio_seconds,
                   format=record.format, speaker=record.speaker, synthesizer=record.synthesizer,
                   stream=record.stream, outcome=record.outcome, ttfb_ms=record.ttfb_ms,
                   total_ms=record.total_ms, credits=credits, held=held)


USAGE_COLUMNS: tuple[str, ...] = UsageRow.__struct_fields__


class Reservation(msgspec.Struct):
    """The result of a credit hold: ``ok`` False means the balance was short."""

    ok: bool
    balance: int | None


class CreditLedger(KeyStore):
    """Balances kept on the keys, held and settled atomically (contract:
    ``veena.testing.stores.CreditLedgerContract``)."""

    @abc.abstractmethod
    async def add_credits(self, key_id: str, amount: int) -> int | None:
        """Adds ``amount`` (may be negative) atomically; returns the new balance, None when
        there is no such key. An unmetered key starts from zero. Raises ValueError when the
        balance would go below zero."""

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
