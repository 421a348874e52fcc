"""What cloning a voice costs a metered key (``[plugins.voices] clone_credits``, default 0).

The cost is held on the key's balance in the auth plugin's database before the clip is encoded
(402 ``insufficient_credits`` when it is short), then settled with a usage row (format
``clone``, speaker = the new voice's id): charged when the voice was made, given back when it
was not. Unmetered keys, open access and a cost of 0 are free.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from veena.platform.db import Database, UsageRow
from veena.platform.errors import VeenaError
from veena.platform.ids import new_id
from veena.platform.job import Principal
from veena.platform.runtime import Runtime

T = TypeVar("T")


def _ledger(runtime: Runtime, principal: Principal | None, cost: int) -> Database | None:
    if cost <= 0 or principal is None or principal.key_id is None or principal.credits is None:
        return None
    auth: Any = runtime.state.get("auth")
    return getattr(auth, "db", None)


async def charged(runtime: Runtime, principal: Principal | None, cost: int, request_id: str,
                  make: Callable[[], Awaitable[T]], voice_id: Callable[[T], str]) -> T:
    """Runs ``make()`` with ``cost`` credits held on the caller's key; settles either way."""
    db = _ledger(runtime, principal, cost)
    if db is None:
        return await make()
    assert principal is not None and principal.key_id is not None
    hold_id, t0 = "h_" + new_id(), time.perf_counter()
    result = await db.reserve(principal.key_id, hold_id, cost, request_id)
    if not result.ok:
        raise VeenaError("insufficient_credits", f"cloning a voice costs {cost} credits and "
                         f"the key has {result.balance or 0}", 402, required=cost,
                         balance=result.balance, key_id=principal.key_id)
    made: T | None = None
    try:
        made = await make()
        return made
    finally:
        await db.settle(UsageRow(
            id=hold_id, key_id=principal.key_id, request_id=request_id, created_at=time.time(),
            chars=0, chars_requested=0, audio_seconds=0.0, format="clone",
            speaker=voice_id(made) if made is not None else "", synthesizer="spark",
            stream=False, outcome="completed" if made is not None else "failed", ttfb_ms=None,
            total_ms=(time.perf_counter() - t0) * 1000, credits=cost if made is not None else 0,
            held=cost))
