"""A sentence store kept in memory: what a third party's store of one interface looks like
(``backend = "tests.support.memory_store:open_memory"``). It implements ``SentenceStore`` only,
so it can serve the storage plugin and not auth."""

from __future__ import annotations

from veena.platform.db import BackendSettings, SentenceStore, StoreUnavailable
from veena.platform.runtime import RequestRecord

_DATABASES: dict[str, dict[str, RequestRecord]] = {}


class MemorySentences(SentenceStore):
    """Records by id in a dict shared by every store opened on it."""

    name = "memory"

    def __init__(self, rows: dict[str, RequestRecord]) -> None:
        self.rows = rows
        self._open = False

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def migrate(self) -> list[str]:
        return []

    async def write_sentences(self, rows: list[RequestRecord]) -> None:
        if not self._open:
            raise StoreUnavailable("the memory store is closed")
        for row in rows:
            self.rows.setdefault(row.id, row)

    async def sentences(self, limit: int = 100,
                        request_id: str | None = None) -> list[RequestRecord]:
        rows = [r for r in self.rows.values() if request_id is None or r.request_id == request_id]
        return sorted(rows, key=lambda r: (-r.created_at, r.id))[:limit]

    async def count_sentences(self) -> int:
        return len(self.rows)


def open_memory(settings: BackendSettings) -> MemorySentences:
    """The store factory: one database per ``sqlite_path`` (the plugin's, used as a name)."""
    return MemorySentences(_DATABASES.setdefault(str(settings.sqlite_path), {}))
