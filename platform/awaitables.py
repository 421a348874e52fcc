"""The "await me maybe" helpers: hook implementations may return values or awaitables."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any


async def await_maybe(value: Any) -> Any:
    """``value`` itself, or what it resolves to when it is awaitable."""
    return await value if inspect.isawaitable(value) else value


async def await_all(results: Iterable[Any]) -> list[Any]:
    """Resolves each fan-out result in order."""
    return [await await_maybe(r) for r in results]
