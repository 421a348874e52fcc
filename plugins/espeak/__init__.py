"""The embedded voice: eSpeak NG (from the ``espeakng-loader`` wheel) driven through ctypes.

Settings, ``[plugins.espeak]``::

    engines = 1            # private copies of the library, one worker thread each
    buffer_ms = 100        # audio per eSpeak NG callback (a request's first goes out at once)
    default_voice = "en-us"
    rate = 175             # words per minute (a speaker's `rate` wins); unset = 175
    pitch = 50             # 0-100 (a speaker's `pitch` wins); unset = 50

A speaker picks its eSpeak NG voice under ``[synthesizers.espeak]`` with ``voice`` (``hi+f3``,
``te``, ``en-us``) and optionally ``rate`` and ``pitch``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec

from veena.platform.errors import ConfigError
from veena.platform.hookspecs import hookimpl
from veena.platform.runtime import Runtime
from veena.plugins.espeak.synthesizer import EspeakSynthesizer

NAME = "espeak"


class Config(msgspec.Struct, forbid_unknown_fields=True):
    """``[plugins.espeak]``."""

    engines: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1
    """Independent eSpeak NG instances (private library copies), one worker thread each."""
    buffer_ms: Annotated[int, msgspec.Meta(ge=10, le=1000)] = 100
    """Milliseconds of audio per eSpeak NG callback."""
    default_voice: str = "en-us"
    """The eSpeak NG voice of speakers that name none."""
    rate: Annotated[int, msgspec.Meta(ge=80, le=450)] | None = None
    """Speaking rate in words per minute for speakers that set none (eSpeak NG default 175)."""
    pitch: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    """Pitch 0-100 for speakers that set none (eSpeak NG default 50)."""
    max_item_chars: Annotated[int, msgspec.Meta(ge=20, le=2000)] = 300
    """Longest text the engine synthesizes in one turn before serving another request."""
    first_audio_ms: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 200
    """While other new requests wait for their first audio, a new request's first turn stops at
    the first word boundary after this much audio and the rest of its text waits for its next
    turn (0 = never cut; the rest restarts as a new phrase, so the cut can be heard). Against
    400 ms: 50 new requests get their first audio in about 75 ms of engine time instead of
    120, and p95 time to first byte at 50 streams fell 10-20% (docs/benchmarks.md)."""
    max_ahead_s: Annotated[float, msgspec.Meta(gt=0)] = 20.0
    """Seconds of audio a request may run ahead of its consumer before its synthesis pauses."""
    max_block_ms: Annotated[int, msgspec.Meta(ge=10)] = 500
    """Audio after a request's first callback buffer is handed on in blocks of about this size
    (at most one buffer more); also the most the consumer merges when several are waiting."""


def _synthesizer(runtime: Runtime) -> EspeakSynthesizer | None:
    synth = runtime.synthesizers.get(NAME)
    return synth if isinstance(synth, EspeakSynthesizer) else None


@hookimpl
def veena_register_synthesizers(runtime: Runtime):
    return [EspeakSynthesizer(runtime.plugin_config(NAME) or Config())]


@hookimpl
async def veena_startup(runtime: Runtime) -> None:
    """Starts the engine and checks every speaker's eSpeak NG voice, when eSpeak serves."""
    synth = _synthesizer(runtime)
    if synth is None or runtime.config.stages.synthesizer != NAME:
        return
    problems = await asyncio.to_thread(synth.validate_voices, list(runtime.speakers))
    if problems:
        raise ConfigError("invalid voice files: " + "; ".join(problems))
    runtime.telemetry.gauge(
        "veena_espeak_engine", "eSpeak NG engine: requests holding it (active: queued, parked "
        "or in synthesis), work items waiting (queued), live worker threads (threads)",
        lambda: _engine_gauges(synth))


def _engine_gauges(synth: EspeakSynthesizer) -> dict[tuple[tuple[str, str], ...], float]:
    engine = synth.engine  # made on first use
    active, queued, threads = ((engine.active_jobs, engine.queued_items, engine.alive_threads)
                               if engine is not None else (0, 0, 0))
    return {(("value", "active"),): float(active), (("value", "queued"),): float(queued),
            (("value", "threads"),): float(threads)}


@hookimpl
async def veena_shutdown(runtime: Runtime) -> None:
    synth = _synthesizer(runtime)
    if synth is not None:
        await asyncio.to_thread(synth.close)
