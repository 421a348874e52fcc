"""CUDA graphs of the static-cache decode step, one per (batch bucket, cache-length bucket).

A decode step of a 0.5B model launches hundreds of small kernels; replaying a captured graph
launches them all at once. Shapes must be fixed, so the live rows are padded up to the next
batch bucket and attention reads the cache up to the next length bucket. All graphs are captured
at start-up (no capture stalls while serving) and share one memory pool.
"""

from __future__ import annotations

import bisect

import torch

from veena.plugins.spark.engine.static_model import StaticQwen2

BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128)
LENGTH_BUCKETS = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


def buckets(limit: int, candidates: tuple[int, ...]) -> list[int]:
    """The candidates below ``limit``, then ``limit`` itself."""
    return [c for c in candidates if c < limit] + [limit]


class DecodeGraphs:
    """Captured decode steps over slots ``[0, B)`` of a ``StaticQwen2``."""

    def __init__(self, model: StaticQwen2) -> None:
        self.model = model
        self.batches = buckets(model.slots, BATCH_BUCKETS)
        self.lengths = buckets(model.max_len, LENGTH_BUCKETS)
        self._ids = torch.zeros(model.slots, 1, dtype=torch.long, device=model.device)
        self._pos = torch.zeros(model.slots, 1, dtype=torch.long, device=model.device)
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    def capture(self) -> None:
        """Captures every bucket pair. Writes junk into the cache: call before serving."""
        pool = torch.cuda.graph_pool_handle()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for rows in self.batches:  # warm-up: lazy initialisation outside any capture
                self.model.forward(0, self._ids[:rows], self._pos[:rows], self.lengths[0])
        torch.cuda.current_stream().wait_stream(side)
        # Large graphs first, so the smaller ones reuse their pool memory.
        for length in reversed(self.lengths):
            for rows in reversed(self.batches):
                graph = torch.cuda.CUDAGraph()
                with torch.inference_mode(), torch.cuda.graph(graph, pool=pool):
                    logits = self.model.forward(0, self._ids[:rows], self._pos[:rows], length)
                self._graphs[(rows, length)] = (graph, logits)
        torch.cuda.synchronize()

    def step(self, ids: torch.Tensor, positions: torch.Tensor, longest: int) -> torch.Tensor:
        """Logits (n, V) for ``ids`` (n,) at ``positions`` (n,) in slots ``[0, n)``;
        ``longest`` is the largest position plus one (known on the host)."""
        n = ids.shape[0]
        rows = self.batches[bisect.bisect_left(self.batches, n)]
        length = self.lengths[bisect.bisect_left(self.lengths, longest)]
        self._ids[:n, 0].copy_(ids)
        self._pos[:n, 0].copy_(positions)
        if rows > n:  # padding rows write position 0 of free slots, which nothing reads
            self._ids[n:rows].zero_()
            self._pos[n:rows].zero_()
        graph, logits = self._graphs[(rows, length)]
        graph.replay()
        return logits[:n]
