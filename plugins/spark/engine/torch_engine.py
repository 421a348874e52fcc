"""The ``torch`` engine: continuous batching over a static KV cache, CUDA graphs on a GPU.

One worker thread owns the model. Each iteration it takes new requests, drops aborted ones,
prefills waiting requests into free slots (whole prompts up to a token budget, or one chunk of a
long prompt, so prefill never stalls the decoding streams for long), then runs one decode step
for every live request together and samples each row with its own parameters. Requests join
and leave between steps. Memory is fixed at start: ``slots`` sequences of ``max_len`` tokens;
when every slot is busy, new requests wait in a queue (``stats()["queued"]``).

On CPU the same loop runs eagerly (the tests use it); on CUDA the decode step replays graphs,
which sample the rows too (the sampling inputs live in the graphs' fixed buffers).
Transformers' own continuous batching was not used: it cannot restrict each request to its own
allowed ids or seed each request, and its CUDA graphs need flash-attention kernels.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from pathlib import Path
from typing import Any

import torch

from veena.plugins.spark.engine.base import FinishReason, TokenRequest
from veena.plugins.spark.engine.loading import load_causal_lm
from veena.plugins.spark.engine.sampling import (MaskTable, RowParams, max_top_k, request_key, sample,
                                                 sample_allowed)
from veena.plugins.spark.engine.static_model import StaticQwen2
from veena.plugins.spark.engine.stream import End, QueueTokenStream, deliver_all, log_abort
from veena.plugins.spark.engine.worker import WorkerEngine

log = logging.getLogger("veena.spark.engine")


class _Seq:
    """A request holding a slot: its prompt progress, last token and sampling state."""

    __slots__ = ("stream", "req", "prefilled", "length", "last", "key", "mask_index", "started",
                 "limit", "unsent")

    def __init__(self, stream: QueueTokenStream, mask_index: int, max_len: int) -> None:
        self.stream = stream
        self.req = stream.request
        self.prefilled = 0
        """Prompt tokens already in the cache."""
        self.length = 0
        """Tokens in the cache (prompt, then generated)."""
        self.last = 0
        """The most recent sampled id: the next decode step's input."""
        self.key = request_key(self.req.sampling.seed)
        self.mask_index = mask_index
        self.started = time.perf_counter()
        self.limit = min(self.req.max_new_tokens, max_len - len(self.req.prompt_ids))
        """New tokens allowed: the request's cap, cut to what its slot can hold."""
        self.unsent: list[int] = []
        """Tokens generated but not yet handed to the event loop."""


class TorchEngine(WorkerEngine):
    """Batched decoding of concurrent requests on one device (CPU or one GPU)."""

    name = "torch"

    def __init__(self, llm_dir: Path, device: str = "cpu", dtype: str = "float32",
                 threads: int | None = None, slots: int = 64, max_len: int = 4096,
                 prefill_tokens: int = 2048) -> None:
        if slots < 1 or max_len < 2 or prefill_tokens < 1:
            raise ValueError("slots, max_len and prefill_tokens must be positive")
        super().__init__(llm_dir, device, dtype, threads)
        self.slots = slots
        self.max_len = max_len
        self.prefill_tokens = prefill_tokens
        self.model: StaticQwen2 | None = None
        self.graphs: Any = None
        self.prefill_graphs: Any = None
        self.masks: MaskTable | None = None
        self._counts["steps"] = 0
        self._live: list[_Seq] = []
        self._waiting: deque[_Seq] = deque()
        self._batch = 0
        self._rows: RowParams | None = None
        self._rows_for: list[_Seq] = []
        self._max_k = 1
        self._graph_samples = False
        """Whether the decode graphs' own sampling serves the current batch."""
        self._host: torch.Tensor | None = None
        self._copied: Any = None

    def _load(self) -> None:
        hf = load_causal_lm(self.llm_dir, self.device, self.dtype, self.threads)
        self.model = StaticQwen2(hf, self.slots, self.max_len)
        self.masks = MaskTable(self.model.vocab, self.device)
        if self.device.type == "cuda":
            from veena.plugins.spark.engine.cuda_graphs import DecodeGraphs, PrefillGraphs

            t = time.perf_counter()
            pool = torch.cuda.graph_pool_handle()
            self.graphs = DecodeGraphs(self.model, pool, self.masks)
            self.graphs.capture()
            self.prefill_graphs = PrefillGraphs(self.model, pool)
            self.prefill_graphs.capture()
            self._warm_prefill()
            # Sampled ids come back through pinned memory and an event: waiting on the event
            # releases the GIL, so the decoder threads run while a step is on the GPU.
            self._host = torch.zeros(self.slots, dtype=torch.long, pin_memory=True)
            self._copied = torch.cuda.Event()
            log.info("torch engine: captured CUDA graphs in %.1f s (KV cache %.2f GiB)",
                     time.perf_counter() - t, self.model.cache_bytes / 2**30)

    def _warm_prefill(self) -> None:
        """Runs prefill once at typical shapes, so the first requests do not pay for loading
        kernels. Writes junk into free slots: call before serving."""
        with torch.inference_mode():
            for rows in (1, min(8, self.slots)):
                for width in (32, 128, 512):
                    if width < self.max_len:
                        ids = torch.zeros(rows, width, dtype=torch.long, device=self.device)
                        pos = torch.arange(width, device=self.device).expand(rows, width)
                        self.model.forward(0, ids, pos, width)
        torch.cuda.synchronize(self.device)

    def _unload(self) -> None:
        self.model = self.graphs = self.prefill_graphs = None

    def _check(self, request: TokenRequest) -> None:
        if len(request.prompt_ids) >= self.max_len:
            raise ValueError(f"prompt of {len(request.prompt_ids)} tokens does not fit a "
                             f"{self.max_len}-token sequence")

    def stats(self) -> dict[str, Any]:
        return {"engine": self.name, "active": len(self._live),
                "queued": len(self._waiting) + self._inbox.qsize(), "batch_size": self._batch,
                "slots": self.slots, **self._counts}

    # --- the worker ---

    def _run(self) -> None:
        while True:
            if not self._take_inbox():
                return
            self._reap()
            try:
                with torch.inference_mode():
                    if self._waiting and len(self._live) < self.slots:
                        self._prefill()
                    if self._live:
                        self._decode()
            except Exception as exc:  # fail the batch, keep the worker alive
                log.exception("torch engine step failed")
                self._fail_all(exc)

    def _take_inbox(self) -> bool:
        """Moves submitted requests to the waiting queue; False on shutdown."""
        block = not self._live and not self._waiting
        try:
            while True:
                item = self._inbox.get(block=block)
                block = False
                if item is None:
                    self._shutdown()
                    return False
                self._waiting.append(_Seq(item, self.masks.index(item.request.allowed),
                                          self.max_len))
        except queue.Empty:
            return True

    def _reap(self) -> None:
        """Drops aborted requests, freeing their slots now."""
        for seq in [s for s in self._waiting if s.stream.aborted]:
            self._waiting.remove(seq)  # a half-prefilled prompt's slot is simply free again
            self._abort(seq)
        for i in reversed(range(len(self._live))):
            if self._live[i].stream.aborted:
                self._abort(self._remove(i))

    def _prefill(self) -> None:
        """Prefills waiting requests into the free slots after the live ones."""
        first = len(self._live)
        head = self._waiting[0]
        remaining = len(head.req.prompt_ids) - head.prefilled
        if head.prefilled or remaining > self.prefill_tokens:
            batch = [head]  # a long prompt goes alone, one chunk per iteration
            pieces = [min(remaining, self.prefill_tokens)]
        else:
            batch, pieces, budget = [], [], self.prefill_tokens
            most = self.slots - first
            if self.prefill_graphs is not None:  # a batch the graphs hold
                most = min(most, self.prefill_graphs.rows[-1])
            for seq in self._waiting:
                n = len(seq.req.prompt_ids)
                if len(batch) == most or (batch and n > budget) or seq.prefilled:
                    break
                batch.append(seq)
                pieces.append(n)
                budget -= n
        logits = self._prefill_logits(first, batch, pieces)
        done = []
        for seq, n in zip(batch, pieces):
            seq.prefilled += n
            seq.length = seq.prefilled
            if seq.prefilled == len(seq.req.prompt_ids):
                done.append(seq)
        for _ in done:
            self._waiting.popleft()
        if done:
            tokens = self._sample(logits[: len(done)], done)
            self._live.extend(done)
            self._emit(done, tokens)

    def _prefill_logits(self, first: int, batch: list[_Seq], pieces: list[int]) -> torch.Tensor:
        """Runs the next ``pieces[i]`` prompt tokens of ``batch[i]`` in slot ``first + i``."""
        start = batch[0].prefilled
        prompts = [s.req.prompt_ids[s.prefilled:s.prefilled + n] for s, n in zip(batch, pieces)]
        slots = list(range(first, first + len(batch)))
        if start == 0:
            if self.prefill_graphs is not None:
                logits = self.prefill_graphs.run(slots, prompts)
                if logits is not None:
                    return logits
        width = max(pieces)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, :len(prompt)] = torch.tensor(prompt)
        ids, last = ids.to(self.device), torch.tensor([n - 1 for n in pieces], device=self.device)
        if start == 0:
            return self.model.prefill(torch.tensor(slots, device=self.device), ids, last)
        positions = start + torch.arange(width, device=self.device).expand(len(batch), width)
        return self.model.forward(first, ids, positions, start + width, last)

    def _decode(self) -> None:
        """One decode step for every live request."""
        live = self._live
        inputs = torch.tensor([(s.last, s.length) for s in live], dtype=torch.long)
        longest = max(s.length for s in live) + 1
        self._load_rows(live)  # before the step: a graph samples from these buffers
        tokens = None
        if self.graphs is not None:
            logits = self.graphs.step(inputs, longest)
            if self._graph_samples:
                tokens = self.graphs.tokens(len(live))
        else:
            inputs = inputs.to(self.device)
            logits = self.model.forward(0, inputs[:, :1], inputs[:, 1:], longest)
        for s in live:
            s.length += 1
        self._batch = len(live)
        self._counts["steps"] += 1
        self._emit(list(live), self._sample(logits, live, tokens))

    def _load_rows(self, seqs: list[_Seq]) -> None:
        """Sampling inputs of ``seqs`` (rebuilt only when the batch changed)."""
        if self._rows_for == seqs:
            return
        args = ([s.req.sampling for s in seqs], [s.key for s in seqs],
                [s.stream.generated for s in seqs], [s.mask_index for s in seqs], self.model.vocab)
        if self.graphs is not None:
            self._rows = self.graphs.rows.load(*args)
        else:
            self._rows = RowParams.build(*args, self.device)
        self._rows_for = list(seqs)
        self._max_k = max_top_k([s.req for s in seqs])
        self._graph_samples = self.graphs is not None and self.graphs.samples(
            [s.mask_index for s in seqs], self._max_k)

    def _sample(self, logits: torch.Tensor, seqs: list[_Seq],
                tokens: torch.Tensor | None = None) -> list[int]:
        """Token ids for ``seqs`` (``tokens``: already sampled by the decode graph)."""
        self._load_rows(seqs)
        if tokens is None:
            if self._graph_samples:  # on a GPU, over the allowed ids only (same draws)
                tokens = sample_allowed(logits, self._rows, self.masks.allowed, self._max_k)
            else:
                tokens = sample(logits, self._rows, self.masks.table, self._max_k)
        self._rows.step += 1
        return self._to_host(tokens)

    def _to_host(self, tokens: torch.Tensor) -> list[int]:
        """The ids as a list; on a GPU the wait for them holds no GIL (``Event.synchronize``).
        With ``.tolist()`` on the GPU tensor and the sampling inside the graph, the decoder
        threads' eager windows starved while steps ran back to back (H200: first audio 504 ms
        instead of 67 ms with an eager first window; docs/benchmarks.md, issue 18 runs)."""
        if self._host is None:
            return tokens.tolist()
        host = self._host[:tokens.shape[0]]
        host.copy_(tokens, non_blocking=True)
        self._copied.record()
        self._copied.synchronize()
        return host.tolist()

    def _emit(self, seqs: list[_Seq], tokens: list[int]) -> None:
        """Hands tokens to their streams, ends finished requests and frees their slots.

        With many live requests, tokens are handed over every few steps (at most 4, i.e. about
        20 ms): each hand-over wakes a task on the event loop, and at 64 streams waking all of
        them every step costs the loop (and through the GIL, this thread) more than the step.
        """
        interval = max(1, min(4, len(self._live) // 16))
        out: list[tuple[QueueTokenStream, Any]] = []
        finished: list[_Seq] = []
        for seq, token in zip(seqs, tokens):
            stream = seq.stream
            end = None
            if token in seq.req.stop_ids:
                end = FinishReason.STOP
            else:
                stream.generated += 1
                self._counts["tokens"] += 1
                seq.last = token
                seq.unsent.append(token)
                if stream.generated >= seq.limit:
                    end = FinishReason.LENGTH
            if end is not None or len(seq.unsent) >= interval:
                out.extend((stream, t) for t in seq.unsent)
                seq.unsent.clear()
            if end is not None:
                out.append((stream, End(end)))
                finished.append(seq)
        if finished:  # bookkeeping first: a reader woken by the last token sees it done
            self._counts["completed"] += len(finished)
            gone = {id(s) for s in finished}
            for i in reversed(range(len(self._live))):
                if id(self._live[i]) in gone:
                    self._remove(i)
        deliver_all(out)

    def _remove(self, i: int) -> _Seq:
        """Takes live request ``i`` out, moving the last live request into its slot."""
        live = self._live
        seq = live[i]
        end = len(live) - 1
        if i != end:
            self.model.move(end, i)
            live[i] = live[end]
        live.pop()
        if self._waiting and self._waiting[0].prefilled:  # keep a half-prefilled prompt packed
            self.model.move(end + 1, end)
        return seq

    def _abort(self, seq: _Seq) -> None:
        self._counts["aborted"] += 1
        seq.stream.deliver(End(FinishReason.ABORTED))
        log_abort(seq.req, seq.stream.generated, len(self._live), seq.started)

    def _fail_all(self, exc: Exception) -> None:
        failed = self._live + list(self._waiting)
        self._live, self._waiting = [], deque()
        self._rows_for = []
        self._counts["failed"] += len(failed)
        deliver_all((s.stream, exc) for s in failed)

    def _shutdown(self) -> None:
        for seq in self._live + list(self._waiting):
            self._abort(seq)
        self._live, self._waiting = [], deque()
        self._drain_inbox()
