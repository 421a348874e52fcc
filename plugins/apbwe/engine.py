"""One model per process, one worker thread in front of it, streams batched together.

Each stream submits its newly arrived low-rate samples and awaits the high-rate samples that
became final. The worker takes every submission waiting when it is free (up to a frame budget)
and runs them as one batched step, so concurrent streams share matrix products, and the event
loop never runs the model. On a GPU the step is a replayed CUDA graph (``graphs.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque

import numpy as np
import torch

from veena.plugins.apbwe.graphs import BucketRunner
from veena.plugins.apbwe.model import APBWEGenerator
from veena.plugins.apbwe.packed import PackedWeights
from veena.plugins.apbwe.streaming import StreamState, Work, run_step

log = logging.getLogger("veena.apbwe")

DTYPES = {"float32": torch.float32, "tf32": torch.float32, "bfloat16": torch.bfloat16,
          "float16": torch.float16}


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when torch sees a GPU, else cpu; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but torch sees no GPU")
    return device


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` -> ``tf32`` on a GPU (float32 numbers, TF32 matrix products), ``float32`` on CPU."""
    if precision == "auto":
        return "tf32" if device.startswith("cuda") else "float32"
    if precision == "tf32" and not device.startswith("cuda"):
        return "float32"
    return precision


class Engine:
    """The loaded generator behind a batching worker thread."""

    def __init__(self, model: APBWEGenerator, device: str = "cpu", precision: str = "float32",
                 max_batch_frames: int = 16384, cuda_graphs: bool = True) -> None:
        if precision == "tf32":
            # process-wide switch; it only relaxes float32 matrix products on the GPU
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.model = model
        self.config = model.config
        self.device = device
        self.precision = precision
        self.packed = PackedWeights(model, device, DTYPES[precision])
        self.runner = BucketRunner(self.packed) if cuda_graphs and device.startswith("cuda") else None
        self.max_batch_frames = max_batch_frames
        self._pending: deque[tuple[Work, concurrent.futures.Future]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.steps = 0
        self.works = 0
        self.busy_seconds = 0.0
        self._thread = threading.Thread(target=self._loop, name="apbwe-engine", daemon=True)
        self._thread.start()

    # --- streams -----------------------------------------------------------------------------

    def new_stream(self) -> StreamState:
        """State for one utterance; feed it through ``process`` in order."""
        return StreamState(self.config)

    def submit(self, state: StreamState, x16: np.ndarray, final: bool) -> concurrent.futures.Future:
        """Queues samples of one stream; the future gives the high-rate samples now final."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        work = Work(state, np.asarray(x16, dtype=np.float32), final)
        with self._cond:
            if self._closed:
                raise RuntimeError("the AP-BWE engine is closed")
            self._pending.append((work, future))
            self._cond.notify()
        return future

    async def process(self, state: StreamState, x16: np.ndarray, final: bool = False) -> np.ndarray:
        """Async ``submit``: awaits this stream's share of the next batched step."""
        return await asyncio.wrap_future(self.submit(state, x16, final))

    def enhance(self, x16: np.ndarray) -> np.ndarray:
        """A whole utterance in one call (blocking): low-rate floats in, high-rate floats out."""
        return self.submit(self.new_stream(), x16, True).result()

    # --- worker ------------------------------------------------------------------------------

    def _take(self) -> list[tuple[Work, concurrent.futures.Future]]:
        batch: list[tuple[Work, concurrent.futures.Future]] = []
        frames, seen, later = 0, set(), []
        ratio, hop = self.config.ratio, self.config.hop_size
        while self._pending:
            work, future = self._pending[0]
            cost = len(work.x16) * ratio // hop + 1
            if batch and frames + cost > self.max_batch_frames:
                break
            self._pending.popleft()
            if id(work.state) in seen:  # a stream's next block waits for its previous one
                later.append((work, future))
                continue
            seen.add(id(work.state))
            batch.append((work, future))
            frames += cost
        self._pending.extendleft(reversed(later))
        return batch

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed and not self._pending:
                    return
                batch = self._take()
            batch = [(w, f) for w, f in batch if f.set_running_or_notify_cancel()]
            if not batch:
                continue
            t0 = time.perf_counter()
            try:
                run_step(self.packed, [w for w, _ in batch], self.runner)
            except BaseException as exc:  # noqa: BLE001 - every waiter must hear of it
                log.exception("apbwe.step_failed", extra={"streams": len(batch)})
                for _, future in batch:
                    future.set_exception(exc)
                continue
            finally:
                self.busy_seconds += time.perf_counter() - t0
                self.steps += 1
                self.works += len(batch)
            for work, future in batch:
                future.set_result(work.out)

    def warm_up(self) -> None:
        """One short utterance through the model (allocations, kernels) before real traffic."""
        self.enhance(np.zeros(self.config.lr_sampling_rate // 5, dtype=np.float32))

    def close(self) -> None:
        """Finishes queued work, then stops the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=30)
