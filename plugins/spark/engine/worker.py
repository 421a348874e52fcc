"""What both torch engines share: a model loaded off the event loop, one worker thread that owns
it, and an inbox of submitted requests."""

from __future__ import annotations

import asyncio
import queue
import threading
from pathlib import Path
from typing import Any

import torch

from veena.plugins.spark.engine.base import FinishReason, TokenRequest
from veena.plugins.spark.engine.loading import resolve_dtype
from veena.plugins.spark.engine.stream import End, QueueTokenStream


class WorkerEngine:
    """Base of the ``torch`` and ``hf`` engines; subclasses write ``_load`` and ``_run``."""

    name = "worker"

    def __init__(self, llm_dir: Path, device: str = "cpu", dtype: str = "float32",
                 threads: int | None = None) -> None:
        self.llm_dir = Path(llm_dir)
        self.device = torch.device(device)
        self.dtype = resolve_dtype(dtype)
        self.threads = threads
        self._inbox: queue.Queue[QueueTokenStream | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._counts = {"submitted": 0, "completed": 0, "aborted": 0, "failed": 0, "tokens": 0}

    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        self._thread = threading.Thread(target=self._run, name=f"spark-{self.name}-engine",
                                        daemon=True)
        self._thread.start()

    async def close(self) -> None:
        if self._thread is not None:
            self._inbox.put(None)  # the worker aborts what runs and returns
            await asyncio.to_thread(self._thread.join, 30)
            self._thread = None
        self._unload()

    def submit(self, request: TokenRequest) -> QueueTokenStream:
        if self._thread is None:
            raise RuntimeError(f"the {self.name} engine is not started")
        if not request.prompt_ids:
            raise ValueError("empty prompt")
        self._check(request)
        stream = QueueTokenStream(request, asyncio.get_running_loop())
        self._counts["submitted"] += 1
        self._inbox.put(stream)
        return stream

    def _drain_inbox(self) -> None:
        """Worker thread, at shutdown: ends every request still in the inbox as aborted."""
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item.deliver(End(FinishReason.ABORTED))

    def _check(self, request: TokenRequest) -> None:
        """Raises ValueError for a request this engine can never serve."""

    def _load(self) -> None:
        """Worker-side loading (runs in a thread before the worker starts)."""
        raise NotImplementedError

    def _unload(self) -> None:
        """Drops the model after the worker stopped."""

    def _run(self) -> None:
        """The worker loop; returns once it takes ``None`` from the inbox."""
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        raise NotImplementedError
