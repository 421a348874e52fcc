"""The key store: API keys by hash and by id, for authentication and ``veena keys``."""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Any

from veena.platform.db.base import Store


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


class KeyStore(Store):
    """API keys (contract: ``veena.testing.stores.KeyStoreContract``)."""

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
