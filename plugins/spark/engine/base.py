"""The one interface every LLM engine implements: submit token ids, stream token ids back, abort.

Engines know nothing about speech: a ``TokenRequest`` carries prompt ids, sampling knobs, the ids
the model may choose from (the speech tokens of the current phase) and the ids that end the
request. A request's ``TokenStream`` is an async iterator of generated ids; ``abort()`` is
synchronous and idempotent, so it is safe in a ``finally`` of a cancelled generator, and it frees
the engine's slot for the request without waiting.

Several requests may run at once; an engine may serve them one step at a time (the torch engine
here) or batch their steps (a batched engine only has to honour the same contract).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class SamplingParams:
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    seed: int | None = None


@dataclass(frozen=True, eq=False, slots=True)
class TokenSet:
    """A fixed set of token ids (e.g. "the 8192 semantic tokens and the stop tokens").

    Compared by identity: engines cache whatever they derive from a set (a logits mask, a list)
    per object, so build each set once and reuse it.
    """

    name: str
    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TokenRequest:
    request_id: str
    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    allowed: TokenSet | None = None
    """Only these ids may be sampled (None: the whole vocabulary)."""
    stop_ids: tuple[int, ...] = ()
    """Ids that end the request; a stop id is not yielded."""


class FinishReason:
    STOP = "stop"
    """A stop id was sampled."""
    LENGTH = "length"
    """``max_new_tokens`` were generated."""
    ABORTED = "aborted"
    """``abort()`` was called (client went away) or the engine shut down."""


@runtime_checkable
class TokenStream(Protocol):
    """Generated ids of one request, in order. Iteration ends when the request finishes."""

    finish_reason: str | None

    def __aiter__(self) -> AsyncIterator[int]: ...

    async def __anext__(self) -> int: ...

    def abort(self) -> None:
        """Stops generation and frees the request's slot; never blocks, may be called twice."""


@runtime_checkable
class Engine(Protocol):
    name: str

    async def start(self) -> None:
        """Loads the model; called once before the first ``submit``."""

    def submit(self, request: TokenRequest) -> TokenStream:
        """Queues a request; must be called on the event loop that will iterate the stream."""

    async def close(self) -> None:
        """Aborts whatever runs and releases the model."""

    def stats(self) -> dict[str, Any]:
        """Counters for logs and health: active/queued requests, totals, aborts."""
