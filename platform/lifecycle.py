"""A server's life: start-up hooks, an optional warm-up synthesis, readiness, refusal while not
ready.

``veena serve`` runs ``start`` from the app's start-up handler and is ready as soon as it
returns. The Modal deployment runs ``start`` and ``warm_up`` itself before the app's start-up
handler (where ``start`` then does nothing), so the first request finds the GPU warm.
"""

from __future__ import annotations

import time
from contextlib import aclosing
from typing import TYPE_CHECKING

from veena.platform.awaitables import await_all
from veena.platform.errors import VeenaError
from veena.platform.logs import event, ms
from veena.platform.runtime import Phase
from veena.platform.schemas import GenerateRequest

if TYPE_CHECKING:
    from veena.platform.pipeline import Pipeline
    from veena.platform.runtime import Runtime

WARM_UP_TEXT = "Hello! This is a short warm-up sentence."
RETRY_AFTER_S = {Phase.STARTING: 5, Phase.WARMING: 5, Phase.DRAINING: 1}
"""Seconds a refused client should wait: a starting server is soon ready; a draining one never
is, so the client should go elsewhere at once (on Modal: another container)."""


async def start(runtime: Runtime) -> None:
    """Runs every plugin's ``veena_startup`` hook, then the open-access check; only once."""
    if runtime.started:
        return
    from veena.platform.app import check_open_access

    t = time.perf_counter()
    await await_all(runtime.pm.hook.veena_startup(runtime=runtime))
    check_open_access(runtime)
    runtime.started = True
    event("tts.started", synthesizer=runtime.config.stages.synthesizer, ms=ms(t))


def mark_ready(runtime: Runtime) -> None:
    """Lets requests in, unless the runtime is draining already."""
    if runtime.phase is not Phase.DRAINING:
        runtime.phase = Phase.READY
        event("tts.ready", synthesizer=runtime.config.stages.synthesizer)


async def warm_up(pipeline: Pipeline, text: str = WARM_UP_TEXT) -> float:
    """One short synthesis through the real pipeline (normalize, chunk, synthesize, process,
    encode in the default format), not recorded; returns the seconds of audio it made.

    Raises whatever the synthesis raises: a server that cannot speak must not become ready.
    """
    runtime = pipeline.runtime
    if runtime.phase is Phase.STARTING:
        runtime.phase = Phase.WARMING
    t = time.perf_counter()
    job = pipeline.prepare(GenerateRequest(text=text, stream=True), "warm-up")
    audio = pipeline.audio(job, record=False)
    async with aclosing(audio):
        size = sum([len(chunk) async for chunk in audio])
    if not job.audio_seconds:
        raise RuntimeError("the warm-up synthesis produced no audio")
    event("tts.warmed_up", synthesizer=job.synthesizer, format=job.output.codec,
          audio_seconds=round(job.audio_seconds, 3), bytes=size, ms=ms(t))
    return job.audio_seconds


def check_accepting(runtime: Runtime) -> None:
    """Raises a 503 (``not_ready`` or ``draining``, with ``Retry-After``) unless ready."""
    phase = runtime.phase
    if phase is Phase.READY:
        return
    headers = {"Retry-After": str(RETRY_AFTER_S[phase])}
    if phase is Phase.DRAINING:
        raise VeenaError("draining", "this server stopped taking requests after a fault; retry "
                         "(another server will take it)", 503, headers=headers, phase=phase.value)
    raise VeenaError("not_ready", f"the server is {phase.value}; retry shortly", 503,
                     headers=headers, phase=phase.value)
