"""An in-process Veena with a trivial voice and codec, for testing plugins through the real
pipeline without depending on a particular synthesizer or encoder."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np

from veena.platform.audio import PCM
from veena.platform.awaitables import await_all
from veena.platform.config import parse_config
from veena.platform.hookspecs import hookimpl
from veena.platform.pipeline import Pipeline
from veena.platform.plugins import build_runtime
from veena.platform.runtime import RequestInfo
from veena.platform.schemas import GenerateRequest

RATE = 16000


class ToneVoice:
    """Each chunk becomes ``blocks_per_chunk`` blocks of 20 ms; ``fail_at`` raises at that
    chunk; ``delay`` sleeps before each block (to keep streams open in concurrency tests)."""

    name = "tone"
    sample_rate = RATE

    def __init__(self) -> None:
        self.blocks_per_chunk = 2
        self.fail_at: int | None = None
        self.delay = 0.0

    async def stream(self, job):
        for i, _chunk in enumerate(job.chunks):
            if self.fail_at == i:
                raise RuntimeError("voice broke")
            job.mark_chunk_started(i)
            for _ in range(self.blocks_per_chunk):
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield PCM(np.full(RATE // 50, 100 * (i + 1), dtype=np.int16), RATE)


class _Encoder:
    def encode(self, block: PCM) -> bytes:
        return block.samples.tobytes()

    def finish(self) -> bytes:
        return b""


class RawCodec:
    name = "raw"
    media_type = "audio/L16"
    aliases: tuple[str, ...] = ()
    sample_rates = (RATE,)
    default_sample_rate = RATE

    def check_bitrate(self, sample_rate: int, bitrate: int | None) -> None:
        if bitrate is not None:
            raise ValueError("raw takes no bitrate")

    def open(self, sample_rate: int, *, streaming: bool, bitrate: int | None = None) -> _Encoder:
        return _Encoder()


class FakesPlugin:
    def __init__(self) -> None:
        self.voice = ToneVoice()

    @hookimpl
    def veena_register_synthesizers(self, runtime):
        return [self.voice]

    @hookimpl
    def veena_register_codecs(self, runtime):
        return [RawCodec()]


def config(tmp: Path, **plugins: dict[str, Any]) -> Any:
    """A configuration using the fakes, with SQLite files and spools under ``tmp``."""
    tables = {"auth": {"sqlite_path": str(tmp / "veena.db"), "spool_dir": str(tmp / "spool")},
              "storage": {"sqlite_path": str(tmp / "veena.db"), "spool_dir": str(tmp / "spool"),
                          "flush_seconds": 0.01},
              # Every sentence its own chunk, so billing by delivered chunk is visible.
              "chunk": {"min_chars": 1, "short_chars": 0}}
    for name, table in plugins.items():
        tables[name] = {**tables.get(name, {}), **table}
    return parse_config({"disable": ["codecs", "espeak"], "stages": {"synthesizer": "tone"},
                         "defaults": {"format": "raw", "speaker": "kavya"},
                         "plugins": tables})


@asynccontextmanager
async def veena(cfg):
    """(pipeline, fakes plugin) with start-up done; shuts down on exit."""
    fakes = FakesPlugin()
    runtime = build_runtime(cfg, extra=[("fakes", fakes)])
    await await_all(runtime.pm.hook.veena_startup(runtime=runtime))
    pipeline = Pipeline(runtime)
    try:
        yield pipeline, fakes
    finally:
        await pipeline.drain()
        await await_all(reversed(runtime.pm.hook.veena_shutdown(runtime=runtime)))


def info(key: str | None = None, header: str = "authorization") -> RequestInfo:
    headers = {}
    if key is not None:
        headers[header] = f"Bearer {key}" if header == "authorization" else key
    return RequestInfo("POST", "/v1/tts/generate", headers, "127.0.0.1")


async def synthesize(pipeline: Pipeline, text: str, key: str | None = None, *,
                     take: int | None = None, request_id: str = "req") -> tuple[Any, list[bytes]]:
    """Admits, prepares and streams one request; ``take`` stops after that many byte chunks,
    like a client that disconnects. Returns (job, chunks)."""
    principal = await pipeline.admit(info(key))
    job = pipeline.prepare(GenerateRequest(text=text), request_id, principal)
    chunks: list[bytes] = []
    audio = pipeline.audio(job)
    try:
        async for data in audio:
            chunks.append(data)
            if take is not None and len(chunks) >= take:
                break
    finally:
        await audio.aclose()
    return job, chunks
