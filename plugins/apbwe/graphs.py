"""CUDA graphs of the batched step, one per padded bucket shape.

A step launches a few hundred small kernels; with one stream in 1 s blocks the GPU mostly waits
for Python to launch them. ``BucketRunner`` pads a step's rows to a bucket (batch size from
``BATCH_BUCKETS``, low-rate samples per row from ``BLOCK_MS_BUCKETS``, positions per row from
``rows.frames_bound``), copies them into that bucket's static buffers (from pinned host memory,
without blocking) and replays the ``rows.step_rows`` graph captured for it. A bucket is
captured on first use, after a warm-up on a side stream, into one memory pool that all
buckets share (a step's outputs are copied out before the next replay, and steps never run
concurrently). The only host synchronization is the copy of the output samples.

Padding rows have no samples and no frames, and ``step_rows`` never mixes rows, so padding
does not change a real row. Without a GPU (``capture=False``) the same padded buffers run
eagerly: that is how the padding is tested on CPU.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import torch

from veena.plugins.apbwe.dsp import sinc_kernel
from veena.plugins.apbwe.packed import PackedWeights
from veena.plugins.apbwe.rows import META, frames_bound, out_samples, row_layout, step_rows

if TYPE_CHECKING:
    from veena.plugins.apbwe.streaming import RowPlan, Work

log = logging.getLogger("veena.apbwe")

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
BLOCK_MS_BUCKETS = (20, 40, 80, 160, 320, 640, 1000)
"""New audio per stream per step (the plugin's blocks are 20 ms to 1 s on a GPU)."""
WARMUP = 2
"""Eager runs on a side stream before a capture (cuFFT plans, cuBLAS handles, allocator)."""


class _Bucket:
    """One padded shape: static input buffers, and after capture its graph and outputs."""

    def __init__(self, packed: PackedWeights, rows: int, samples: int, frames: int) -> None:
        dev = packed.device
        self.rows, self.samples, self.frames = rows, samples, frames
        self.x16 = torch.zeros(rows, samples, device=dev)
        self.meta = torch.zeros(rows, len(META), dtype=torch.int64, device=dev)
        self.state = torch.zeros(rows, row_layout(packed.config).size, device=dev)
        self.graph: tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor] | None = None
        """The captured step and its static outputs (samples, state)."""
        self.failed = False

    def eager(self, packed: PackedWeights) -> tuple[torch.Tensor, torch.Tensor]:
        return step_rows(packed, self.x16, self.meta, self.state, self.frames)


class BucketRunner:
    """Runs steps of up to ``max_batch`` streams on padded bucket shapes; CUDA graphs when
    ``capture`` (default: on a CUDA device)."""

    def __init__(self, packed: PackedWeights, *, capture: bool | None = None,
                 batches: tuple[int, ...] = BATCH_BUCKETS,
                 block_ms: tuple[int, ...] = BLOCK_MS_BUCKETS) -> None:
        cfg = packed.config
        self.cuda = packed.device.type == "cuda"
        self.capture = self.cuda if capture is None else capture
        if self.capture and not self.cuda:
            raise ValueError("CUDA graphs need the model on a CUDA device")
        self.packed = packed
        self.batches = tuple(sorted(batches))
        width = sinc_kernel(cfg.ratio)[1]  # room for the resampler's flush in a final step
        self.samples = tuple(sorted(ms * cfg.lr_sampling_rate // 1000 + width for ms in block_ms))
        self.max_batch = self.batches[-1]
        self._buckets: dict[tuple[int, int, int], _Bucket] = {}
        self._pool = torch.cuda.graph_pool_handle() if self.capture else None
        self._zero = torch.zeros(row_layout(cfg).size, device=packed.device)
        most = self.samples[-1]
        self._host_x = torch.zeros(self.max_batch * most, pin_memory=self.cuda)
        self._host_meta = torch.zeros(self.max_batch * len(META), dtype=torch.int64,
                                      pin_memory=self.cuda)
        self._host_out = torch.zeros(self.max_batch * out_samples(cfg, frames_bound(cfg, most)),
                                     pin_memory=self.cuda)
        self.captures = 0
        self.replays = 0
        self.padded_eager = 0
        self.unbucketed = 0

    @property
    def shapes(self) -> list[tuple[int, int, int]]:
        """(batch, samples, positions) of the buckets used so far."""
        return sorted(self._buckets)

    def samples_bucket(self, lr_count: int, count: int) -> int | None:
        """Low-rate samples per row of the smallest bucket that fits a row needing
        ``lr_count`` samples and ``count`` positions, or None."""
        return next((s for s in self.samples if s >= lr_count
                     and frames_bound(self.packed.config, s) >= count), None)

    def shape(self, rows: int, lr_count: int, count: int) -> tuple[int, int, int] | None:
        """(batch, samples, positions) of the smallest bucket that fits, or None."""
        batch = next((b for b in self.batches if b >= rows), None)
        samples = self.samples_bucket(lr_count, count)
        if batch is None or samples is None:
            return None
        return batch, samples, frames_bound(self.packed.config, samples)

    def run(self, works: list[Work], plans: list[RowPlan]) -> tuple[np.ndarray, torch.Tensor] | None:
        """The rows through their bucket: (n, samples) host output (valid until the next
        run) and the new (n, state) device rows; None when no bucket fits."""
        shape = self.shape(len(works), max(p.lr_count for p in plans), max(p.count for p in plans))
        if shape is None:
            self.unbucketed += 1
            return None
        b = self._buckets.get(shape)
        if b is None:
            b = self._buckets[shape] = _Bucket(self.packed, *shape)
        n = len(works)
        x = self._host_x[:b.rows * b.samples].view(b.rows, b.samples)
        xn = x.numpy()
        for i, w in enumerate(works):
            xn[i, :len(w.x16)] = w.x16  # the rest of the row is masked in step_rows
        meta = self._host_meta[:b.rows * len(META)].view(b.rows, len(META))
        mn = meta.numpy()
        mn[:n] = [p.meta for p in plans]
        mn[n:] = 0  # padding rows: no samples, no frames
        b.x16.copy_(x, non_blocking=True)
        b.meta.copy_(meta, non_blocking=True)
        torch.stack([self._zero if w.state.row is None else w.state.row for w in works],
                    out=b.state[:n])
        out, state = self._execute(b)
        new = state[:n].clone()  # the next replay overwrites the graph's outputs
        host = self._host_out[:n * out.shape[1]].view(n, out.shape[1])
        host.copy_(out[:n], non_blocking=True)
        if self.cuda:
            torch.cuda.current_stream(self.packed.device).synchronize()
        return host.numpy(), new

    def _execute(self, b: _Bucket) -> tuple[torch.Tensor, torch.Tensor]:
        if self.capture and b.graph is None and not b.failed:
            self._capture(b)
        if b.graph is None:
            self.padded_eager += 1
            return b.eager(self.packed)
        graph, out, state = b.graph
        graph.replay()
        self.replays += 1
        return out, state

    def _capture(self, b: _Bucket) -> None:
        dev = self.packed.device
        try:
            side = torch.cuda.Stream(device=dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):
                for _ in range(WARMUP):
                    b.eager(self.packed)
            torch.cuda.current_stream(dev).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: other threads of the process (a TTS model) may use the GPU meanwhile
            with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
                out, state = b.eager(self.packed)
        except RuntimeError as exc:
            b.failed = True
            log.warning("apbwe.graph_capture_failed", extra={
                "shape": (b.rows, b.samples, b.frames), "error": str(exc), "fallback": "eager"})
            return
        b.graph = (graph, out, state)
        self.captures += 1
