"""The first decoder window of a stream as one CUDA graph: one row, one fixed length.

A lone BiCodec window is bound by kernel launches (10-12 ms eager on an H200 against 3.6 ms
replayed, docs/benchmarks.md), and the first window of every stream (first block + its
lookahead, no left context) is on the path to the first audio byte. Only that shape is
captured: larger batches gained nothing from graphs, and each shape costs memory. One graph
serves every decoder thread, one replay at a time; a thread that finds it busy decodes eagerly.
"""

from __future__ import annotations

import threading
from typing import Any

import torch


class FirstWindowGraph:
    """``decode_with_embedding`` for one window of ``length`` tokens, replayed."""

    def __init__(self, decoder: Any, device: torch.device, length: int, dim: int) -> None:
        self.length = length
        self._ids = torch.zeros(1, length, dtype=torch.long, device=device)
        self._d = torch.zeros(1, dim, dtype=next(decoder.parameters()).dtype, device=device)
        self._lock = threading.Lock()
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(2):  # warm-up outside the capture: algorithm choice, lazy init
                decoder.decode_with_embedding(self._ids, self._d)
        torch.cuda.current_stream(device).wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self._graph):
            self._wav = decoder.decode_with_embedding(self._ids, self._d)
        torch.cuda.synchronize(device)

    def decode(self, tokens: tuple[int, ...], d_vector: torch.Tensor) -> torch.Tensor | None:
        """The (1, length * hop) float32 waveform on the host, or None when ``tokens`` do not
        fit this graph or another thread is replaying it (decode eagerly then)."""
        if len(tokens) != self.length or not self._lock.acquire(blocking=False):
            return None
        try:
            self._ids.copy_(torch.tensor([tokens], dtype=torch.long), non_blocking=True)
            self._d.copy_(d_vector)
            self._graph.replay()
            return self._wav.float().cpu()
        finally:
            self._lock.release()
