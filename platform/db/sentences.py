"""The sentence store: every finished request's record, text and metadata, kept as it came."""

from __future__ import annotations

import abc

from veena.platform.db.base import Store
from veena.platform.runtime import RequestRecord

SentenceRow = RequestRecord
"""A stored sentence is the request's record itself (its ``id`` makes a replay a no-op)."""
SENTENCE_COLUMNS: tuple[str, ...] = RequestRecord.__struct_fields__


class SentenceStore(Store):
    """Request records (contract: ``veena.testing.stores.SentenceStoreContract``)."""

    @abc.abstractmethod
    async def write_sentences(self, rows: list[RequestRecord]) -> None:
        """Stores a batch; rows whose ``id`` is already stored are skipped."""

    @abc.abstractmethod
    async def sentences(self, limit: int = 100,
                        request_id: str | None = None) -> list[RequestRecord]:
        """Stored rows, newest first (for tests, the CLI and analysis)."""

    @abc.abstractmethod
    async def count_sentences(self) -> int: ...
