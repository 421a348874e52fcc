"""The vLLM engine: a thin adapter from ``TokenRequest``/``TokenStream`` to vLLM's async engine.

vLLM (the production engine on GPUs) is optional and imported only when this engine starts.
Everything speech-specific stays outside: the allowed ids of the phase become
``allowed_token_ids``, stop ids ``stop_token_ids``; prompts go in as token ids, and outputs are
read as token ids (no detokenization).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path
from typing import Any

from veena.plugins.spark.engine.base import FinishReason, TokenRequest

log = logging.getLogger("veena.spark.engine")
_serial = itertools.count()


class VllmEngine:
    name = "vllm"

    def __init__(self, llm_dir: Path, dtype: str = "bfloat16", **engine_args: Any) -> None:
        self.llm_dir = Path(llm_dir)
        self.dtype = dtype
        self.engine_args = engine_args
        self._engine: Any = None
        self._vllm: Any = None
        self._active: set[str] = set()
        self._counts = {"submitted": 0, "completed": 0, "aborted": 0}

    async def start(self) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise RuntimeError("engine = \"vllm\" needs the vllm package (pip install "
                               "'veena[vllm]'), which is not installed") from exc
        self._vllm = vllm
        args = vllm.AsyncEngineArgs(model=str(self.llm_dir), dtype=self.dtype,
                                    **{"enable_prefix_caching": True, **self.engine_args})
        self._engine = vllm.AsyncLLMEngine.from_engine_args(args)

    def submit(self, request: TokenRequest) -> VllmTokenStream:
        if self._engine is None:
            raise RuntimeError("the vllm engine is not started")
        self._counts["submitted"] += 1
        return VllmTokenStream(self, request)

    def sampling_params(self, request: TokenRequest) -> Any:
        s = request.sampling
        return self._vllm.SamplingParams(
            temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, seed=s.seed,
            max_tokens=request.max_new_tokens, stop_token_ids=list(request.stop_ids),
            allowed_token_ids=list(request.allowed.ids) if request.allowed else None,
            detokenize=False, skip_special_tokens=False)

    async def close(self) -> None:
        for rid in list(self._active):
            await self._abort(rid)
        engine, self._engine = self._engine, None
        shutdown = getattr(engine, "shutdown", None)
        if shutdown is not None:
            shutdown()

    async def _abort(self, rid: str) -> None:
        if self._engine is not None and rid in self._active:
            self._active.discard(rid)
            self._counts["aborted"] += 1
            await self._engine.abort(rid)

    def stats(self) -> dict[str, Any]:
        return {"engine": self.name, "active": len(self._active), **self._counts}


class VllmTokenStream:
    def __init__(self, engine: VllmEngine, request: TokenRequest) -> None:
        self.request = request
        self.finish_reason: str | None = None
        self.generated = 0
        self._engine = engine
        self._rid = f"{request.request_id}#{next(_serial)}"  # unique even if a client reuses ids
        self._outputs: Any = None
        self._pending: list[int] = []
        self._done = False

    def __aiter__(self) -> VllmTokenStream:
        return self

    async def __anext__(self) -> int:
        while not self._pending:
            if self._done:
                raise StopAsyncIteration
            if self._outputs is None:
                e = self._engine
                e._active.add(self._rid)
                self._outputs = e._engine.generate(
                    {"prompt_token_ids": list(self.request.prompt_ids)},
                    e.sampling_params(self.request), self._rid)
            try:
                out = await anext(self._outputs)
            except StopAsyncIteration:
                self._finish(FinishReason.LENGTH)
                continue
            completion = out.outputs[0]
            ids = [t for t in completion.token_ids[self.generated:] if t not in self.request.stop_ids]
            self.generated = len(completion.token_ids)
            self._pending.extend(ids)
            if out.finished:
                self._finish(FinishReason.STOP if completion.finish_reason == "stop"
                             else FinishReason.LENGTH)
        return self._pending.pop(0)

    def _finish(self, reason: str) -> None:
        self._done = True
        self.finish_reason = self.finish_reason or reason
        if self._rid in self._engine._active:
            self._engine._active.discard(self._rid)
            self._engine._counts["completed"] += 1

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self.finish_reason = self.finish_reason or FinishReason.ABORTED
        self._pending.clear()
        if self._rid in self._engine._active:  # the abort itself is async: schedule it
            try:
                task = asyncio.get_running_loop().create_task(self._engine._abort(self._rid))
            except RuntimeError:  # no running loop (interpreter shutdown): nothing to free
                return
            task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("vllm abort failed: %r", task.exception())
