"""The Veena3 neural voice (``spark``): a Spark-TTS-style Qwen2 LLM writes BiCodec tokens, a
lean BiCodec decoder streams them to 16 kHz audio.

Registered only when a checkpoint folder is configured (``[plugins.spark] model_path`` or the
``VEENA_MODEL_PATH`` environment variable); serve it with ``[stages] synthesizer = "spark"`` or
``veena serve --synthesizer spark --model DIR``. Nothing heavy is imported here: torch and
transformers load at start-up, and only when this voice is the one that serves requests.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import msgspec

from veena.platform.errors import ConfigError
from veena.platform.hookspecs import hookimpl
from veena.platform.runtime import Runtime

log = logging.getLogger("veena.spark")

NAME = "spark"
ENV_MODEL_PATH = "VEENA_MODEL_PATH"
SAMPLE_RATE = 16000
HOP = 320


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[plugins.spark]``."""

    model_path: str | None = msgspec.field(default_factory=lambda: os.environ.get(ENV_MODEL_PATH) or None)
    """Checkpoint folder with ``LLM/`` and ``BiCodec/`` (default: ``$VEENA_MODEL_PATH``)."""
    engine: Literal["torch", "hf", "vllm"] = "torch"
    """``torch``: batched decoding over a static KV cache (CUDA graphs on a GPU); ``hf``: plain
    Hugging Face decoding, one request per step (the baseline); ``vllm``: the vLLM engine."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1`` ..."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """LLM weights: ``auto`` is bfloat16 on a GPU, float32 on CPU."""
    decoder_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    threads: int | None = None
    """torch intra-op threads. On CPU the default is 1: small per-token ops spin-wait across
    threads, which on a busy CPU made a decode step 20x slower (measured)."""
    slots: int | None = None
    """Sequences the ``torch`` engine decodes together; more requests wait in a queue. The KV
    cache (slots x max_sequence tokens) is allocated at start. Default: 64 on a GPU, 4 on CPU."""
    max_sequence: int = 4096
    """Prompt plus generated tokens one ``torch`` engine slot holds."""
    prefill_tokens: int = 2048
    """Prompt tokens the ``torch`` engine prefills between two decode steps (longer prompts are
    prefilled in pieces, so new requests never stall the streams already decoding for long)."""
    decode_workers: int = 2
    """Threads running BiCodec windows (concurrent streams decode in parallel)."""
    max_tokens: int = 3000
    """Most semantic tokens a chunk may generate (3000 = 60 s); a request's ``max_tokens``
    can only lower it."""
    max_tokens_per_char: float = 15.0
    min_tokens_per_chunk: int = 150
    """The run-away guard: a chunk of N characters stops after max(min, N x per_char) tokens."""
    window_left: int = 24
    """Tokens of left context per decoder window (seam error measured in
    docs/benchmarks.md: 24 is within 0.2 int16 LSB of a whole-utterance decode)."""
    window_lookahead: int = 24
    first_lookahead: int | None = None
    """Lookahead of the first block only (default: ``window_lookahead``): fewer tokens bring the
    first audio sooner and enlarge the error at the first seam only (table in
    docs/benchmarks.md)."""
    first_block: int = 2
    """Tokens in the first emitted block (40 ms; leaves once first_block + first lookahead = 26
    tokens exist). Later blocks ramp up (x1.5: 2, 3, 8, 20, 50, 80 ...) so the audio already
    sent covers the wait for the next block at up to 2/3 of real time. 2 instead of 6 took 6-8
    ms off the first audio on an H200 (docs/benchmarks.md)."""
    block: int = 80
    """Tokens in every later block (1.6 s): a window of 24 + 80 + 24 tokens decodes 1.6 tokens
    per token played (2.2 at 40, 2.9 at 25); at 256 streams on an H200 only 80 kept every
    stream faster than real time (docs/benchmarks.md)."""
    first_window_graph: bool = True
    """On a GPU, decode each stream's first window (one row) by replaying a CUDA graph: 3-4 ms
    instead of 10-12 ms eager, on the way to the first audio byte."""
    crossfade_ms: float = 10.0
    """Blend where decoder windows meet."""
    chunk_crossfade_ms: float = 20.0
    """Blend where the audio of consecutive text chunks meets."""
    vllm: dict[str, Any] = {}
    """Extra ``vllm.AsyncEngineArgs`` (e.g. ``gpu_memory_utilization``) for ``engine = "vllm"``."""

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be at least 1")
        if (self.slots is not None and self.slots < 1) or self.max_sequence < 2 \
                or self.prefill_tokens < 1:
            raise ValueError("slots, max_sequence and prefill_tokens must be positive")
        if self.decode_workers < 1 or self.max_tokens < 1 or self.min_tokens_per_chunk < 1:
            raise ValueError("decode_workers, max_tokens and min_tokens_per_chunk must be >= 1")
        self.window_plan()  # raises ValueError on inconsistent window sizes

    def window_plan(self):
        from veena.plugins.spark.streaming import WindowPlan

        return WindowPlan(left=self.window_left, lookahead=self.window_lookahead,
                          first_lookahead=self.first_lookahead, first_block=self.first_block,
                          block=self.block, hop=HOP,
                          crossfade=round(self.crossfade_ms * SAMPLE_RATE / 1000))

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def resolved_dtype(self, device: str) -> str:
        if self.dtype != "auto":
            return self.dtype
        return "float32" if device == "cpu" else "bfloat16"


def checkpoint_folder(path: str) -> Path:
    """The checkpoint folder, checked for ``LLM/`` and ``BiCodec/``; ConfigError otherwise."""
    folder = Path(path).expanduser()
    missing = [p for p in ("LLM", "BiCodec/config.yaml", "BiCodec/model.safetensors")
               if not (folder / p).exists()]
    if missing:
        raise ConfigError(f"invalid configuration: `plugins.spark.model_path` = {str(folder)!r} is "
                          f"not a Veena3 checkpoint (missing {', '.join(missing)})")
    return folder


@hookimpl
def veena_register_synthesizers(runtime: Runtime):
    cfg: Config | None = runtime.plugin_config("spark")
    if cfg is None or not cfg.model_path:
        return []  # no checkpoint configured: the neural voice is simply not offered
    from veena.plugins.spark.synthesizer import SparkSynthesizer

    synth = SparkSynthesizer(cfg, checkpoint_folder(cfg.model_path))
    runtime.state["spark"] = synth
    return [synth]


@hookimpl
async def veena_startup(runtime: Runtime) -> None:
    synth = runtime.state.get("spark")
    if synth is None:
        return
    runtime.telemetry.gauge("veena_engine", "Veena3 LLM engine: requests decoding (active), "
                            "waiting for a slot (queued) and the last step's batch size",
                            lambda: _engine_gauges(synth))
    # Load only when this voice serves requests; otherwise stream() loads on first use.
    if runtime.config.stages.synthesizer == synth.name:
        await synth.start(list(runtime.speakers))


def _engine_gauges(synth) -> dict[tuple[tuple[str, str], ...], float]:
    engine = synth.engine
    if engine is None:
        return {}
    stats = engine.stats()
    return {(("engine", engine.name), ("value", key)): float(stats.get(key, 0))
            for key in ("active", "queued", "batch_size")}


@hookimpl
async def veena_shutdown(runtime: Runtime) -> None:
    synth = runtime.state.get("spark")
    if synth is not None:
        await synth.close()


@hookimpl
def veena_register_commands(subparsers) -> None:
    from veena.plugins.spark import command

    command.register(subparsers)


@hookimpl
def veena_serve_options(parser) -> None:
    parser.add_argument("--model", help="neural voice checkpoint folder with LLM/ and BiCodec/ "
                                        "(config: plugins.spark.model_path; env: VEENA_MODEL_PATH)")


@hookimpl
def veena_apply_options(args, config) -> None:
    if getattr(args, "model", None):
        config.plugins.setdefault(NAME, {})["model_path"] = args.model


@hookimpl
def veena_deploy_overrides(settings, config) -> None:
    """The deployment's checkpoint and engine; engine slots sized to ``max_inputs``."""
    if settings.synthesizer != NAME:
        return
    spark = config.plugins.setdefault(NAME, {})
    spark["model_path"] = settings.model_path
    spark["engine"] = settings.engine
    if settings.engine == "torch":
        spark.setdefault("slots", settings.max_inputs)
    elif settings.engine == "vllm":
        spark["vllm"] = {"max_num_seqs": settings.max_inputs, **spark.get("vllm", {})}
