"""A server's life: start-up hooks, an optional warm-up synthesis, readiness, refusal while not
ready.

``veena serve`` runs ``start`` from the app's start-up handler and is ready as soon as it
returns. The Modal deployment runs ``start`` and ``warm_up`` itself before the app's start-up
handler (where ``start`` then does nothing), so the first request finds the GPU warm.

Shutdown (``serve``): on SIGTERM or SIGINT the server drains: health answers 503 ``draining``,
new synthesis requests 503 with ``Retry-After``, streams in flight go on for up to
``server.shutdown_grace_s``; then each one still running is ended at its next audio block
(encoder tail and body terminator written, credits settled for what was delivered, error code
``shutdown``), connections close, records and spools are flushed by the shutdown hooks, and
the process exits 0. A second signal exits at once.
"""

from __future__ import annotations

import time
from contextlib import aclosing
from typing import TYPE_CHECKING

import asyncio
import logging
import signal
from types import FrameType
from typing import Any

from veena.platform.awaitables import await_all
from veena.platform.errors import VeenaError
from veena.platform.logs import event, ms
from veena.platform.runtime import Phase
from veena.platform.schemas import GenerateRequest

if TYPE_CHECKING:
    from veena.platform.pipeline import Pipeline
    from veena.platform.runtime import Runtime

log = logging.getLogger("veena.lifecycle")
STOP_WAIT_S = 5.0
"""After the grace, how long streams get to end properly (flush to a slow reader) before
uvicorn cancels them."""
WARM_UP_TEXT = "Hello! This is a short warm-up sentence."
RETRY_AFTER_S = {Phase.STARTING: 5, Phase.WARMING: 5, Phase.DRAINING: 1}
"""Seconds a refused client should wait: a starting server is soon ready; a draining one never
is, so the client should go elsewhere at once (on Modal: another container)."""


async def start(runtime: Runtime) -> None:
    """Runs every plugin's ``veena_startup`` hook, then the open-access check; only once."""
    if runtime.started:
        return
    from veena.platform.access import check_open_access

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
    event("tts.warmed_up", synthesizer=job.synthesizer.name, format=job.output.codec.name,
          audio_seconds=round(job.audio_seconds, 3), bytes=size, ms=ms(t))
    return job.audio_seconds


def check_accepting(runtime: Runtime) -> None:
    """Raises a 503 (``not_ready`` or ``draining``, with ``Retry-After``) unless ready."""
    phase = runtime.phase
    if phase is Phase.READY:
        return
    headers = {"Retry-After": str(RETRY_AFTER_S[phase])}
    if phase is Phase.DRAINING:
        raise VeenaError("draining", "this server stopped taking requests (shutting down or "
                         "after a fault); retry (another server will take it)", 503,
                         headers=headers, phase=phase.value)
    raise VeenaError("not_ready", f"the server is {phase.value}; retry shortly", 503,
                     headers=headers, phase=phase.value)


async def drain_streams(pipeline: Pipeline, grace_s: float) -> int:
    """Stops taking requests, lets streams run for ``grace_s``, then ends those left; returns
    how many had to be ended."""
    from veena.platform.faults import begin_draining

    begin_draining(pipeline.runtime, "shutdown")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    event("tts.shutdown_started", active_streams=pipeline.active_streams, grace_s=grace_s)
    while pipeline.active_streams and loop.time() < deadline:
        await asyncio.sleep(0.05)
    ended = pipeline.stop_streams("shutdown") if pipeline.active_streams else 0
    end_by = loop.time() + STOP_WAIT_S
    while pipeline.active_streams and loop.time() < end_by:
        await asyncio.sleep(0.05)
    event("tts.shutdown_streams_ended", ended=ended, left=pipeline.active_streams)
    return ended


def serve(app: Any, host: str, port: int) -> None:
    """Runs ``app`` under uvicorn with the bounded, draining shutdown of the module docstring."""
    import uvicorn

    pipeline: Pipeline = app.state.pipeline
    grace = pipeline.runtime.config.server.shutdown_grace_s

    class Server(uvicorn.Server):
        draining: asyncio.Task[int] | None = None

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.draining is not None:  # a second signal: exit now
                self.should_exit = self.force_exit = True
                return
            if not self.started:
                self.should_exit = True
                return
            loop = asyncio.get_running_loop()
            self.draining = loop.create_task(self._drain())
            loop.call_soon_threadsafe(lambda: None)  # wakes the loop if it sleeps in select

        async def _drain(self) -> int:
            try:
                return await drain_streams(pipeline, grace)
            finally:
                self.should_exit = True

    # No access log: the tts.* events already log every request, with its request ID.
    # No permessage-deflate on WebSockets: compressing audio frames gains nothing and cost half
    # the event loop's time at 50 sockets (docs/benchmarks.md, WebSocket).
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                            timeout_graceful_shutdown=int(STOP_WAIT_S),
                            ws_per_message_deflate=False)
    Server(config).run()
