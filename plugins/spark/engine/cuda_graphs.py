"""CUDA graphs of the static-cache model: the decode step, one graph per (batch bucket,
cache-length bucket), and whole-prompt prefill, one per (rows bucket, prompt-length bucket).

A forward pass of a 0.5B model launches hundreds of small kernels; replaying a captured graph
launches them all at once. Shapes must be fixed, so rows are padded up to the next batch bucket,
prompts up to the next length bucket, and decode attention reads the cache up to the next length
bucket. All graphs are captured at start-up (no capture stalls while serving) and share one
memory pool.

Given the engine's ``MaskTable``, each decode graph also samples its rows (``sample_allowed``
over fixed ``RowParams`` buffers, top-k up to ``GRAPH_TOP_K``): the 80-odd small sampling
kernels no longer cost a launch each from the engine thread, which holds the GIL meanwhile.
"""

from __future__ import annotations

import bisect

import torch

from veena.plugins.spark.engine.sampling import MaskTable, RowParams, sample_allowed
from veena.plugins.spark.engine.static_model import StaticQwen2

BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256)
LENGTH_BUCKETS = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
PREFILL_ROWS = (1, 2, 4, 8, 16, 32)
PREFILL_WIDTHS = (32, 64, 128, 256)
GRAPH_TOP_K = 64
"""Candidates the in-graph sampler ranks: batches whose largest top-k is above it (or that
sample from the whole vocabulary) are sampled outside the graph."""


def buckets(limit: int, candidates: tuple[int, ...]) -> list[int]:
    """The candidates below ``limit``, then ``limit`` itself."""
    return [c for c in candidates if c < limit] + [limit]


class DecodeGraphs:
    """Captured decode steps over slots ``[0, B)`` of a ``StaticQwen2``; with ``masks``, each
    step also samples its rows from ``rows`` (fill it with ``RowParams.load``)."""

    def __init__(self, model: StaticQwen2, pool: object, masks: MaskTable | None = None) -> None:
        self.model = model
        self.pool = pool
        self.masks = masks
        self.batches = buckets(model.slots, BATCH_BUCKETS)
        self.lengths = buckets(model.max_len, LENGTH_BUCKETS)
        # One (slots, 2) buffer of [id, position] rows: a step's inputs arrive in one copy.
        self._inputs = torch.zeros(model.slots, 2, dtype=torch.long, device=model.device)
        self._ids, self._pos = self._inputs[:, 0:1], self._inputs[:, 1:2]
        self.rows = RowParams.buffers(model.slots, model.device) if masks is not None else None
        self._allowed = masks.allowed if masks is not None else None
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor,
                                                  torch.Tensor | None]] = {}
        self._last: torch.Tensor | None = None

    def _forward(self, rows: int, length: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.model.forward(0, self._ids[:rows], self._pos[:rows], length)
        if self.rows is None:
            return logits, None
        return logits, sample_allowed(logits, self.rows.head(rows), self._allowed, GRAPH_TOP_K)

    def capture(self) -> None:
        """Captures every bucket pair. Writes junk into the cache: call before serving."""
        pool = self.pool
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for rows in self.batches:  # warm-up: lazy initialisation outside any capture
                self._forward(rows, self.lengths[0])
        torch.cuda.current_stream().wait_stream(side)
        # Large graphs first, so the smaller ones reuse their pool memory.
        for length in reversed(self.lengths):
            for rows in reversed(self.batches):
                graph = torch.cuda.CUDAGraph()
                with torch.inference_mode(), torch.cuda.graph(graph, pool=pool):
                    logits, tokens = self._forward(rows, length)
                self._graphs[(rows, length)] = (graph, logits, tokens)
        torch.cuda.synchronize()

    def samples(self, mask_rows: list[int], max_k: int) -> bool:
        """Whether the step's own sampling serves a batch with these mask rows and top-k."""
        return (self.rows is not None and max_k <= GRAPH_TOP_K
                and self.masks.allowed is self._allowed and self._allowed.holds(mask_rows))

    def step(self, inputs: torch.Tensor, longest: int) -> torch.Tensor:
        """Logits (n, V) for ``inputs`` (n, 2): each row's input id and its position, rows in
        slots ``[0, n)``; ``longest`` is the largest position plus one (known on the host).
        The step's sampled tokens (when it samples) are ``tokens(n)`` afterwards."""
        n = inputs.shape[0]
        rows = self.batches[bisect.bisect_left(self.batches, n)]
        length = self.lengths[bisect.bisect_left(self.lengths, longest)]
        self._inputs[:n].copy_(inputs, non_blocking=True)
        if rows > n:  # padding rows write position 0 of free slots, which nothing reads
            self._inputs[n:rows].zero_()
        graph, logits, self._last = self._graphs[(rows, length)]
        graph.replay()
        return logits[:n]

    def tokens(self, n: int) -> torch.Tensor:
        """The tokens the last ``step`` sampled for its first ``n`` rows."""
        if self._last is None:
            raise RuntimeError("these graphs do not sample")
        return self._last[:n]


class PrefillGraphs:
    """Captured whole-prompt prefills (``StaticQwen2.prefill``) for small batches of short
    prompts; ``run`` returns None for a batch no bucket holds (the caller runs it eagerly)."""

    def __init__(self, model: StaticQwen2, pool: object) -> None:
        self.model = model
        self.pool = pool
        self.rows = [r for r in PREFILL_ROWS if r <= model.slots]
        self.widths = [w for w in PREFILL_WIDTHS if w < model.max_len]
        rows, width = self.rows[-1], self.widths[-1]
        self._ids = torch.zeros(rows, width, dtype=torch.long, device=model.device)
        self._slots = torch.zeros(rows, dtype=torch.long, device=model.device)
        self._last = torch.zeros(rows, dtype=torch.long, device=model.device)
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    def capture(self) -> None:
        """Captures every bucket pair. Writes junk into slot 0: call before serving."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for width in self.widths:
                self.model.prefill(self._slots[:1], self._ids[:1, :width], self._last[:1])
        torch.cuda.current_stream().wait_stream(side)
        for width in reversed(self.widths):
            for rows in reversed(self.rows):
                graph = torch.cuda.CUDAGraph()
                with torch.inference_mode(), torch.cuda.graph(graph, pool=self.pool):
                    logits = self.model.prefill(self._slots[:rows], self._ids[:rows, :width],
                                                self._last[:rows])
                self._graphs[(rows, width)] = (graph, logits)
        torch.cuda.synchronize()

    def run(self, slots: list[int], prompts: list[tuple[int, ...]]) -> torch.Tensor | None:
        """Logits (n, V) after prefilling ``prompts`` into ``slots``, or None if too big."""
        n, longest = len(prompts), max(len(p) for p in prompts)
        if n > self.rows[-1] or longest > self.widths[-1]:
            return None
        rows = self.rows[bisect.bisect_left(self.rows, n)]
        width = self.widths[bisect.bisect_left(self.widths, longest)]
        ids = torch.zeros(rows, width, dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, :len(p)] = torch.tensor(p)
        # Padding rows repeat the last real row: the same values land in the same slot.
        pad = [n - 1] * (rows - n)
        ids[n:] = ids[n - 1]
        self._ids[:rows, :width].copy_(ids, non_blocking=True)
        self._slots[:rows].copy_(torch.tensor(slots + [slots[-1]] * len(pad)), non_blocking=True)
        self._last[:rows].copy_(torch.tensor([len(p) - 1 for p in prompts]
                                             + [len(prompts[-1]) - 1] * len(pad)),
                                non_blocking=True)
        graph, logits = self._graphs[(rows, width)]
        graph.replay()
        return logits[:n]
