"""The "await me maybe" helpers: hook implementations may return values or awaitables."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any


async def await_maybe(value: Any) -> Any:
    """``value`` itself, or what it resolves to when it is awaitable."""
    return await value if inspect.isawaitable(value) else value


async def await_all(results: Iterable[Any]) -> list[Any]:
    """Resolves each fan-out result in order. When one raises, the coroutines after it are
    closed unrun (a hook call has created them all already), then the error propagates."""
    pending = list(results)
    out = []
    try:
        for i, result in enumerate(pending):
            out.append(await await_maybe(result))
    except BaseException:
        for rest in pending[i + 1:]:
            if inspect.iscoroutine(rest):
                rest.close()
        raise
    return out
