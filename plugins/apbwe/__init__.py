"""Super-resolution 16 kHz -> 48 kHz with AP-BWE, as a streaming audio-processing plugin.

When a request asks for one of ``trigger_rates`` (48 kHz by default) and the voice makes
16 kHz audio, the ``veena_process_audio`` wrapper sends the stream through the AP-BWE
generator block by block (see ``streaming.py``) and the response carries
``X-Super-Resolution: ap-bwe``. Without a usable checkpoint (none configured, missing, broken,
or torch not installed) the service still starts, logs a warning, and such requests get plain
resampling by the codec with ``X-Super-Resolution: resample-fallback``.

``[plugins.apbwe]`` settings are in ``Config``; the checkpoint path may also come from
``VEENA_APBWE_PATH`` or ``AP_BWE_CHECKPOINT_DIR``. torch is imported only when a checkpoint is
loaded, so the platform runs without it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import numpy as np

from veena.platform.audio import PCM
from veena.platform.hookspecs import hookimpl

if TYPE_CHECKING:
    from veena.platform.job import Job
    from veena.platform.runtime import Runtime
    from veena.plugins.apbwe.engine import Engine

log = logging.getLogger("veena.apbwe")

ENV_PATHS = ("VEENA_APBWE_PATH", "AP_BWE_CHECKPOINT_DIR")
HEADER = "X-Super-Resolution"
NAME = "apbwe"
INPUT_RATE = 16000


@dataclass(slots=True)
class Loaded:
    """This process's AP-BWE engine (``runtime.find(Loaded)``); None: requests are resampled."""

    engine: Engine | None = None


@dataclass(slots=True)
class Spent:
    """Seconds one request spent in the model (``job.get(Spent)``)."""

    seconds: float = 0.0


def _default_path() -> str | None:
    return next((os.environ[k] for k in ENV_PATHS if os.environ.get(k)), None)


class Config(msgspec.Struct, forbid_unknown_fields=True):
    """``[plugins.apbwe]``."""

    enabled: bool = True
    checkpoint: str | None = msgspec.field(default_factory=_default_path)
    """Checkpoint file (``g_*``) or its folder, with ``config.json`` beside it. Default from
    ``VEENA_APBWE_PATH`` or ``AP_BWE_CHECKPOINT_DIR``."""
    trigger_rates: list[int] = msgspec.field(default_factory=lambda: [48000])
    """Requested output rates that get super-resolution (the model's output rate)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "float32", "tf32", "bfloat16", "float16"] = "auto"
    """``auto``: float32 on CPU; on a GPU float32 numbers with TF32 matrix products."""
    min_block_ms: int | None = None
    """Least new audio a stream hands to the model at once (except at its end). A step has a
    fixed cost (reading 120 MB of weights), so the default is 200 ms on CPU, 20 ms on a GPU."""
    max_block_ms: int = 1000
    """Most new audio a stream hands to the model at once; longer blocks are split."""
    max_batch_frames: int = 16384
    """Most STFT frames (600 per second of audio) in one batched step across streams."""
    cuda_graphs: bool = True
    """On a GPU, replay each step as a CUDA graph of a padded bucket shape (captured on first
    use of a bucket, which stalls that step and keeps some GPU memory). Off: every step runs
    eagerly at its exact shape."""
    cpu_threads: int = 1
    """torch's CPU threads when the model runs on CPU (process-wide; 0 leaves torch's default
    of one per core). One, because on the 2-core VM two threads competing with the encoder
    and other load ran 5x slower than one (docs/benchmarks.md)."""
    warm_up: bool = True


def _settings(runtime: Runtime) -> Config:
    return runtime.plugin_config(NAME) or Config()


# --- lifecycle -------------------------------------------------------------------------------

def load_engine(cfg: Config) -> Engine:
    """Loads the checkpoint and starts the engine (blocking; raises on any failure)."""
    import torch

    from veena.plugins.apbwe.checkpoint import load_generator
    from veena.plugins.apbwe.engine import Engine, resolve_device, resolve_precision

    device = resolve_device(cfg.device)
    if cfg.cpu_threads and device == "cpu":
        torch.set_num_threads(cfg.cpu_threads)
    model = load_generator(cfg.checkpoint, device)
    engine = Engine(model, device, resolve_precision(cfg.precision, device), cfg.max_batch_frames,
                    cfg.cuda_graphs)
    if cfg.warm_up:
        engine.warm_up()
    return engine


@hookimpl
async def veena_startup(runtime: Runtime) -> None:
    cfg = _settings(runtime)
    loaded = runtime.publish(Loaded())
    if not cfg.enabled:
        return
    if not cfg.checkpoint:
        log.warning("apbwe.unavailable", extra={
            "reason": "no checkpoint configured (plugins.apbwe.checkpoint, VEENA_APBWE_PATH)",
            "fallback": "resampling"})
        return
    t0 = time.perf_counter()
    try:
        engine = await asyncio.to_thread(load_engine, cfg)
    except ImportError as exc:
        log.warning("apbwe.unavailable", extra={"reason": f"torch is not installed ({exc})",
                                                "fallback": "resampling"})
        return
    except Exception as exc:  # noqa: BLE001 - any load failure degrades to resampling
        log.warning("apbwe.unavailable", extra={"reason": str(exc), "checkpoint": cfg.checkpoint,
                                                "fallback": "resampling"})
        return
    loaded.engine = engine
    log.info("apbwe.loaded", extra={"checkpoint": cfg.checkpoint, "device": engine.device,
                                    "precision": engine.precision,
                                    "ms": round((time.perf_counter() - t0) * 1000, 1)})


@hookimpl
async def veena_shutdown(runtime: Runtime) -> None:
    loaded = runtime.withdraw(Loaded)
    if loaded is not None and loaded.engine is not None:
        await asyncio.to_thread(loaded.engine.close)


# --- the stream ------------------------------------------------------------------------------

@hookimpl(wrapper=True)
def veena_process_audio(stream: AsyncIterator[PCM], job: Job, runtime: Runtime):
    inner = yield
    cfg = _settings(runtime)
    if not cfg.enabled or job.output.sample_rate not in cfg.trigger_rates:
        return inner
    if job.synthesizer.sample_rate != INPUT_RATE:
        return inner  # not narrow-band: the codec resamples as usual
    loaded = runtime.find(Loaded)
    engine = loaded.engine if loaded is not None else None
    if engine is None or engine.config.hr_sampling_rate != job.output.sample_rate:
        job.extra_headers[HEADER] = "resample-fallback"
        runtime.telemetry.events.add(1, {"event": "sr_fallback"})
        return inner
    job.extra_headers[HEADER] = "ap-bwe"
    runtime.telemetry.events.add(1, {"event": "sr_used"})
    return super_resolve(inner, engine, cfg, job)


async def super_resolve(inner: AsyncIterator[PCM], engine: Engine, cfg: Config,
                        job: Job | None = None) -> AsyncIterator[PCM]:
    """The stream at the model's output rate. Blocks that arrive while the model is busy are
    handed over together (up to ``max_block_ms``), so a slow step makes the next one bigger
    instead of queueing many small ones. A block at another rate than 16 kHz (not expected)
    ends the enhanced part and passes on unchanged; the codec resamples it."""
    rate_in, rate_out = engine.config.lr_sampling_rate, engine.config.hr_sampling_rate
    min_ms = cfg.min_block_ms if cfg.min_block_ms is not None else \
        (200 if engine.device == "cpu" else 20)
    min_block = max(1, min_ms * rate_in // 1000)
    max_block = max(min_block, cfg.max_block_ms * rate_in // 1000)
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)
    end = object()

    async def pump() -> None:
        try:
            async with aclosing(inner):
                async for block in inner:
                    await queue.put(block)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            await queue.put(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        await queue.put(end)

    reader = asyncio.get_running_loop().create_task(pump())
    state = engine.new_stream()
    held: list[np.ndarray] = []
    held_len = 0
    spent = 0.0
    try:
        ended = False
        passthrough: list[PCM] = []
        while not ended and not passthrough:
            items = [await queue.get()]
            size = sum(len(i.samples) for i in items if isinstance(i, PCM))
            while not queue.empty() and held_len + size < max_block:
                items.append(queue.get_nowait())
                size += len(items[-1].samples) if isinstance(items[-1], PCM) else 0
            for item in items:
                if item is end:
                    ended = True
                elif isinstance(item, BaseException):
                    raise item
                elif item.sample_rate != rate_in or passthrough:
                    passthrough.append(item)
                else:
                    held.append(item.samples.astype(np.float32) / 32768.0)
                    held_len += len(item.samples)
            done = ended or bool(passthrough)
            if held_len < min_block and not done:
                continue
            x = np.concatenate(held) if held else np.zeros(0, dtype=np.float32)
            held, held_len = [], 0
            for i in range(0, max(len(x), 1), max_block):
                t0 = time.perf_counter()
                out = await engine.process(state, x[i:i + max_block], done and i + max_block >= len(x))
                spent += time.perf_counter() - t0
                if len(out):
                    yield PCM.from_float(out, rate_out)
        for block in passthrough:
            yield block
        if passthrough and not ended:
            async for block in _drain(queue, end):
                yield block
    finally:
        reader.cancel()
        try:
            await reader
        except BaseException:  # noqa: BLE001 - it was cancelled or already reported
            pass
        if job is not None:
            (job.get(Spent) or job.attach(Spent())).seconds += spent


async def _drain(queue: asyncio.Queue, end: object) -> AsyncIterator[PCM]:
    while True:
        item = await queue.get()
        if item is end:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


@hookimpl
def veena_register_commands(subparsers) -> None:
    from veena.plugins.apbwe import command

    command.register(subparsers)


@hookimpl
def veena_deploy_overrides(settings, config) -> None:
    """The deployment's checkpoint, unless the configuration names one."""
    config.plugins.setdefault(NAME, {}).setdefault("checkpoint", settings.apbwe_path)
