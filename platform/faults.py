"""GPU faults: recognising them, and draining the process on the first one.

A CUDA out-of-memory error, an illegal memory access or a dead engine leaves the process unfit
to take more work (the CUDA context may be corrupt, the engine gone). On the first one the
runtime switches to ``draining``: ``/v1/tts/health`` answers 503, new synthesis requests get a
503 ``draining`` error, requests in flight finish or fail on their own, and every plugin's
``veena_drain`` hook runs once (the Modal deployment stops fetching inputs there; a plain
``veena serve`` has none and only logs, so a supervisor restarts it when health says so).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING

from veena.platform.awaitables import await_maybe
from veena.platform.logs import event
from veena.platform.runtime import Phase

if TYPE_CHECKING:
    from veena.platform.runtime import Runtime

log = logging.getLogger("veena.faults")


class EngineDead(RuntimeError):
    """Raised by an engine that can no longer serve any request (its worker or process died)."""


ENGINE_DEAD_NAMES = frozenset({"EngineDead", "EngineDeadError", "AsyncEngineDeadError"})
"""Exception class names that mean the LLM engine died: ours and vLLM's (v0 and v1)."""

MESSAGE_MARKERS: tuple[tuple[str, str], ...] = (
    ("out of memory", "cuda_oom"),
    ("illegal memory access", "illegal_memory_access"),
    ("cublas_status", "cublas_error"),
    ("cudnn_status", "cudnn_error"),
    ("nccl error", "nccl_error"),
    ("cuda error", "cuda_error"),
)
"""Substrings (lower case) of ``RuntimeError`` messages torch raises for device failures, most
specific first, with the fault kind each one means."""


def gpu_fault(exc: BaseException) -> str | None:
    """The kind of GPU fault ``exc`` is or was caused by (``cuda_oom``, ``illegal_memory_access``,
    ``cuda_error``, ``cublas_error``, ``cudnn_error``, ``nccl_error``, ``engine_dead``), else None.

    Follows ``__cause__``/``__context__``, so a fault wrapped by a plugin's own error still
    counts. Never imports torch: without it loaded, no torch error can exist.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = _kind(current)
        if kind is not None:
            return kind
        current = current.__cause__ or current.__context__
    return None


def _kind(exc: BaseException) -> str | None:
    if type(exc).__name__ in ENGINE_DEAD_NAMES:
        return "engine_dead"
    torch = sys.modules.get("torch")
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return "cuda_oom"
    if isinstance(exc, RuntimeError):
        message = str(exc).lower()
        if "cuda" in message or "cublas" in message or "cudnn" in message or "nccl" in message:
            for marker, kind in MESSAGE_MARKERS:
                if marker in message:
                    return kind
    return None


def begin_draining(runtime: Runtime, reason: str) -> asyncio.Task[None] | None:
    """Switches the runtime to ``draining`` and starts the ``veena_drain`` hooks in a task of
    their own (the failing request is not held up by them). Only the first call does anything;
    later ones return None."""
    if runtime.phase is Phase.DRAINING:
        return None
    runtime.phase = Phase.DRAINING
    hooks = runtime.pm.hook.veena_drain.get_hookimpls()
    event("tts.draining", reason=reason, drain_hooks=[h.plugin_name for h in hooks])
    if not hooks:
        log.warning("draining after a %s: this process now refuses synthesis (503) until it is "
                    "restarted", reason)
    return asyncio.get_running_loop().create_task(_run_drain_hooks(runtime, reason))


async def _run_drain_hooks(runtime: Runtime, reason: str) -> None:
    # Each implementation on its own: one failing drain action must not stop the others.
    for impl in runtime.pm.hook.veena_drain.get_hookimpls():
        try:
            await await_maybe(impl.function(reason=reason, runtime=runtime))
        except Exception:  # noqa: BLE001
            log.exception("the veena_drain hook of %s failed", impl.plugin_name)
