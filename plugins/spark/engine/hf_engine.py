"""The ``hf`` engine: plain Hugging Face decoding, one request at a time per step.

Each request keeps its own ``DynamicCache`` and the worker thread steps active requests in turn
(prefill, then one token per step). This is how a Hugging Face model decodes out of the box:
the baseline the batched ``torch`` engine is measured against, and its reference in tests
(same logits, same seeded tokens).
"""

from __future__ import annotations

import inspect
import logging
import queue
import time
from pathlib import Path
from typing import Any

import torch

from veena.plugins.spark.engine.base import FinishReason
from veena.plugins.spark.engine.loading import load_causal_lm
from veena.plugins.spark.engine.sampling import MaskTable, RowParams, max_top_k, request_key, sample
from veena.plugins.spark.engine.stream import End, QueueTokenStream, log_abort
from veena.plugins.spark.engine.worker import WorkerEngine

log = logging.getLogger("veena.spark.engine")


class _Slot:
    __slots__ = ("stream", "req", "past", "next_input", "key", "mask_index", "started")

    def __init__(self, stream: QueueTokenStream, mask_index: int) -> None:
        self.stream = stream
        self.req = stream.request
        self.past: Any = None
        self.next_input: torch.Tensor | None = None
        self.key = request_key(self.req.sampling.seed)
        self.mask_index = mask_index
        self.started = time.perf_counter()


class HfEngine(WorkerEngine):
    """Hugging Face model + per-request KV caches on one worker thread, stepped round-robin."""

    name = "hf"

    def __init__(self, llm_dir: Path, device: str = "cpu", dtype: str = "float32",
                 threads: int | None = None) -> None:
        super().__init__(llm_dir, device, dtype, threads)
        self.model: Any = None
        self.vocab_size = 0
        self.masks: MaskTable | None = None
        self._keep_arg: str | None = None
        self._cache_arg = "past_key_values"
        self._active = 0

    def _load(self) -> None:
        self.model = load_causal_lm(self.llm_dir, self.device, self.dtype, self.threads)
        self.vocab_size = self.model.get_output_embeddings().weight.shape[0]
        self.masks = MaskTable(self.vocab_size, self.device)
        params = inspect.signature(self.model.forward).parameters
        self._keep_arg = next((a for a in ("logits_to_keep", "num_logits_to_keep") if a in params), None)
        # transformers 5.2x calls the KV cache argument ``cache``; earlier ones ``past_key_values``.
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    def _unload(self) -> None:
        self.model = None

    def stats(self) -> dict[str, Any]:
        return {"engine": self.name, "active": self._active, "queued": self._inbox.qsize(),
                "batch_size": min(self._active, 1), **self._counts}

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
                    active.append(_Slot(item, self.masks.index(item.request.allowed)))
                    self._active = len(active)
            except queue.Empty:
                pass
            for slot in list(active):
                if self._step(slot):
                    active.remove(slot)
                    self._active = len(active)

    def _step(self, slot: _Slot) -> bool:
        """One prefill or decode step of one request; True when the request is finished."""
        from transformers import DynamicCache

        stream, req = slot.stream, slot.req
        if stream.aborted:
            self._drop(slot, FinishReason.ABORTED)
            return True
        try:
            with torch.inference_mode():
                if slot.past is None:
                    slot.past = DynamicCache()
                    ids = torch.tensor([req.prompt_ids], dtype=torch.long, device=self.device)
                else:
                    ids = slot.next_input
                kwargs = {self._keep_arg: 1} if self._keep_arg else {}
                kwargs[self._cache_arg] = slot.past
                out = self.model(input_ids=ids, use_cache=True, **kwargs)
                slot.past = _returned_cache(out, slot.past)
                rows = RowParams.build([req.sampling], [slot.key], [stream.generated],
                                       [slot.mask_index], self.vocab_size, self.device)
                token = int(sample(out.logits[:, -1], rows, self.masks.table, max_top_k([req])))
        except Exception as exc:  # a broken request must not take the worker down
            log.exception("hf engine step failed", extra={"request_id": req.request_id})
            self._counts["failed"] += 1
            stream.deliver(exc)
            return True
        if token in req.stop_ids:
            return self._finish(slot, FinishReason.STOP)
        stream.generated += 1
        self._counts["tokens"] += 1
        stream.deliver(token)
        if stream.generated >= req.max_new_tokens:
            return self._finish(slot, FinishReason.LENGTH)
        slot.next_input = torch.tensor([[token]], dtype=torch.long, device=self.device)
        return False

    def _finish(self, slot: _Slot, reason: str) -> bool:
        self._counts["completed"] += 1
        slot.stream.deliver(End(reason))
        slot.past = None
        return True

    def _drop(self, slot: _Slot, reason: str) -> None:
        slot.past = None  # frees the KV cache now
        self._counts["aborted"] += 1
        slot.stream.deliver(End(reason))
        log_abort(slot.req, slot.stream.generated, max(0, self._active - 1), slot.started)


def _returned_cache(out: Any, given: Any) -> Any:
    for name in ("cache", "past_key_values"):
        value = getattr(out, name, None)
        if value is not None:
            return value
    return given  # a Cache object is updated in place
