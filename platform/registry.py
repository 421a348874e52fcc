"""Named registries filled at start-up; a duplicate name is an error, never a silent override."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar


class Named(Protocol):
    name: str


T = TypeVar("T", bound=Named)


class DuplicateNameError(ValueError):
    """Two plugins registered the same name in one registry."""


class Registry(Generic[T]):
    """A name -> object map that rejects duplicates and remembers who registered what."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._owners: dict[str, str] = {}

    def add(self, item: T, owner: str = "?") -> None:
        """Registers ``item`` under ``item.name`` (lower-cased); raises on a duplicate."""
        key = item.name.lower()
        if key in self._items:
            raise DuplicateNameError(
                f"{self.kind} {key!r} registered by {owner!r} is already registered by "
                f"{self._owners[key]!r}")
        self._items[key] = item
        self._owners[key] = owner

    def get(self, name: str) -> T | None:
        return self._items.get(name.lower())

    def owner(self, name: str) -> str:
        return self._owners[name.lower()]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)
