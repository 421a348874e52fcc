"""The torch engine: a Hugging Face causal LM with a KV cache, driven by one worker thread.

The worker owns the model. It takes requests from an inbox, and steps every active request in
turn (prefill, then one token a step), handing each token to the event loop that submitted the
request. Aborting marks the request; the worker drops it before its next step, which frees its
KV cache. Runs on CPU or one GPU; the batched engine of the next milestone keeps this contract.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import torch

from veena.plugins.spark.engine.base import FinishReason, SamplingParams, TokenRequest, TokenSet

log = logging.getLogger("veena.spark.engine")
_events = logging.getLogger("veena.events")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class _End:
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class QueueTokenStream:
    """Tokens handed from the worker thread to an asyncio queue on the submitting loop."""

    def __init__(self, engine: TorchEngine, request: TokenRequest,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.request = request
        self.finish_reason: str | None = None
        self.aborted = False
        self.generated = 0
        self._engine = engine
        self._loop = loop
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._closed = False

    def __aiter__(self) -> QueueTokenStream:
        return self

    async def __anext__(self) -> int:
        if self._closed:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, int):
            return item
        self._closed = True
        if isinstance(item, _End):
            self.finish_reason = self.finish_reason or item.reason
            raise StopAsyncIteration
        raise item

    def abort(self) -> None:
        if self.finish_reason is None:
            self.finish_reason = FinishReason.ABORTED
        self.aborted = True  # read by the worker before the request's next step

    # --- called on the worker thread ---

    def _deliver(self, item: Any) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
            return True
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.aborted = True
            return False


class _Slot:
    __slots__ = ("stream", "req", "past", "next_input", "generator", "mask", "started")

    def __init__(self, stream: QueueTokenStream) -> None:
        self.stream = stream
        self.req = stream.request
        self.past: Any = None
        self.next_input: torch.Tensor | None = None
        self.generator: torch.Generator | None = None
        self.mask: torch.Tensor | None = None
        self.started = time.perf_counter()


class TorchEngine:
    """Hugging Face model + KV cache on one worker thread, requests stepped round-robin."""

    name = "torch"

    def __init__(self, llm_dir: Path, device: str = "cpu", dtype: str = "float32",
                 threads: int | None = None) -> None:
        self.llm_dir = Path(llm_dir)
        self.device = torch.device(device)
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose from {list(DTYPES)}")
        self.dtype = DTYPES[dtype]
        self.threads = threads
        self.model: Any = None
        self.vocab_size = 0
        self._inbox: queue.Queue[QueueTokenStream | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._masks: dict[int, tuple[TokenSet, torch.Tensor]] = {}
        self._keep_arg: str | None = None
        self._cache_arg = "past_key_values"
        self._counts = {"submitted": 0, "completed": 0, "aborted": 0, "failed": 0, "tokens": 0}
        self._active = 0

    # --- lifecycle ---

    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        self._thread = threading.Thread(target=self._run, name="spark-torch-engine", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        from transformers import AutoModelForCausalLM

        if self.threads:
            torch.set_num_threads(self.threads)
        model = AutoModelForCausalLM.from_pretrained(self.llm_dir, **_dtype_kwarg(self.dtype))
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.vocab_size = self.model.get_output_embeddings().weight.shape[0]
        params = inspect.signature(self.model.forward).parameters
        self._keep_arg = next((a for a in ("logits_to_keep", "num_logits_to_keep") if a in params), None)
        # transformers 5.2x calls the KV cache argument ``cache``; earlier ones ``past_key_values``.
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    async def close(self) -> None:
        if self._thread is not None:
            self._inbox.put(None)
            await asyncio.to_thread(self._thread.join, 30)
            self._thread = None
        self.model = None

    def submit(self, request: TokenRequest) -> QueueTokenStream:
        if self._thread is None:
            raise RuntimeError("the torch engine is not started")
        if not request.prompt_ids:
            raise ValueError("empty prompt")
        stream = QueueTokenStream(self, request, asyncio.get_running_loop())
        self._counts["submitted"] += 1
        self._inbox.put(stream)
        return stream

    def stats(self) -> dict[str, Any]:
        return {"engine": self.name, "active": self._active, "queued": self._inbox.qsize(),
                **self._counts}

    # --- the worker ---

    def _run(self) -> None:
        active: list[_Slot] = []
        while True:
            try:
                while True:
                    item = self._inbox.get(block=not active)
                    if item is None:
                        for slot in active:
                            self._drop(slot, FinishReason.ABORTED)
                        self._drain_inbox()
                        return
                    active.append(_Slot(item))
                    self._active = len(active)
            except queue.Empty:
                pass
            for slot in list(active):
                done = self._step(slot)
                if done:
                    active.remove(slot)
                    self._active = len(active)

    def _drain_inbox(self) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item._deliver(_End(FinishReason.ABORTED))

    def _step(self, slot: _Slot) -> bool:
        """One prefill or decode step of one request; True when the request is finished."""
        stream, req = slot.stream, slot.req
        if stream.aborted:
            self._drop(slot, FinishReason.ABORTED)
            return True
        try:
            with torch.inference_mode():
                if slot.past is None:
                    self._prepare(slot)
                    ids = torch.tensor([req.prompt_ids], dtype=torch.long, device=self.device)
                else:
                    ids = slot.next_input
                kwargs = {self._keep_arg: 1} if self._keep_arg else {}
                kwargs[self._cache_arg] = slot.past
                out = self.model(input_ids=ids, use_cache=True, **kwargs)
                slot.past = _returned_cache(out, slot.past)
                token = sample_token(out.logits[0, -1], req.sampling, slot.mask, slot.generator)
        except Exception as exc:  # a broken request must not take the worker down
            log.exception("torch engine step failed", extra={"request_id": req.request_id})
            self._counts["failed"] += 1
            stream._deliver(exc)
            return True
        if token in req.stop_ids:
            return self._finish(slot, FinishReason.STOP)
        stream.generated += 1
        self._counts["tokens"] += 1
        stream._deliver(token)
        if stream.generated >= req.max_new_tokens:
            return self._finish(slot, FinishReason.LENGTH)
        slot.next_input = torch.tensor([[token]], dtype=torch.long, device=self.device)
        return False

    def _prepare(self, slot: _Slot) -> None:
        from transformers import DynamicCache

        req = slot.req
        slot.past = DynamicCache()
        seed = req.sampling.seed if req.sampling.seed is not None else secrets.randbits(63)
        slot.generator = torch.Generator(device=self.device).manual_seed(seed)
        slot.mask = self._mask(req.allowed, req.stop_ids)

    def _mask(self, allowed: TokenSet | None, stop_ids: tuple[int, ...]) -> torch.Tensor | None:
        if allowed is None:
            return None
        cached = self._masks.get(id(allowed))
        if cached is not None and cached[0] is allowed:
            return cached[1]
        mask = torch.zeros(self.vocab_size, dtype=torch.bool, device=self.device)
        mask[torch.tensor([i for i in allowed.ids if i < self.vocab_size], dtype=torch.long)] = True
        self._masks[id(allowed)] = (allowed, mask)
        return mask

    def _finish(self, slot: _Slot, reason: str) -> bool:
        self._counts["completed"] += 1
        slot.stream._deliver(_End(reason))
        slot.past = None
        return True

    def _drop(self, slot: _Slot, reason: str) -> None:
        slot.past = None  # frees the KV cache now
        self._counts["aborted"] += 1
        slot.stream._deliver(_End(reason))
        _events.info("spark.engine_aborted", extra={
            "request_id": slot.req.request_id.split(":", 1)[0], "engine_request": slot.req.request_id,
            "generated": slot.stream.generated, "max_new_tokens": slot.req.max_new_tokens,
            "active": max(0, self._active - 1),
            "ms": round((time.perf_counter() - slot.started) * 1000, 1)})


def sample_token(logits: torch.Tensor, params: SamplingParams, mask: torch.Tensor | None,
                 generator: torch.Generator | None) -> int:
    """Temperature, then top-k, then top-p (nucleus) sampling over the allowed ids."""
    logits = logits.float()
    if mask is not None:
        logits = logits.masked_fill(~mask[: logits.shape[-1]], float("-inf"))
    if params.temperature <= 0:
        return int(torch.argmax(logits))
    logits = logits / params.temperature
    # Masked ids are -inf: if fewer than k ids are allowed, the extra picks get probability 0.
    k = min(params.top_k, logits.shape[-1]) if params.top_k > 0 else logits.shape[-1]
    values, indices = torch.topk(logits, k)
    probs = torch.softmax(values, dim=-1)
    if params.top_p < 1.0:
        before = torch.cumsum(probs, dim=-1) - probs  # mass of the tokens ranked above
        probs = torch.where(before < params.top_p, probs, torch.zeros_like(probs))
    choice = torch.multinomial(probs, 1, generator=generator)
    return int(indices[choice])


def _returned_cache(out: Any, given: Any) -> Any:
    for name in ("cache", "past_key_values"):
        value = getattr(out, name, None)
        if value is not None:
            return value
    return given  # a Cache object is updated in place


def _dtype_kwarg(dtype: torch.dtype) -> dict[str, Any]:
    """``dtype=`` on transformers that know it (4.56+), ``torch_dtype=`` before."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}
