"""The ``espeak`` synthesizer: a job's chunks in, a stream of PCM blocks out, as they are made."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import numpy as np

from veena.platform.alignment import wants_words, word_marks
from veena.platform.audio import PCM
from veena.plugins.espeak.engine import END, EspeakEngine, Marks, WorkItem
from veena.plugins.espeak.library import DEFAULT_PITCH, DEFAULT_RATE, MAX_RATE, MIN_RATE
from veena.plugins.espeak.text import (clean, clean_positions, item_offsets, split_items,
                                       split_voice, voice_for)

if TYPE_CHECKING:
    from veena.platform.job import Job
    from veena.speakers import Speaker
    from veena.plugins.espeak import Config

log = logging.getLogger("veena.espeak")

SAMPLE_RATE = 22050
"""eSpeak NG's one output rate (checked when the engine starts)."""


class EspeakSynthesizer:
    """Rule-based voices for many languages; the engine starts on first use or at start-up."""

    name = "espeak"
    sample_rate = SAMPLE_RATE

    def speed_factor(self, speed: float, speaker: Speaker) -> float:
        """The part of a request's ``speed`` eSpeak NG applies itself: its rate (``espeakRATE``,
        words per minute) scaled by ``speed`` within ``MIN_RATE``-``MAX_RATE`` (80-450). At the
        default 175 words/min that covers about 0.46-2.57; the pipeline time-stretches the
        rest."""
        base = _parameters(speaker.settings(self.name), self.config)[0]
        return scaled_rate(base, speed) / base

    def __init__(self, config: Config) -> None:
        self.config = config
        self._engine: EspeakEngine | None = None
        self._lock = threading.Lock()

    # --- engine lifetime ---------------------------------------------------------------------

    @property
    def engine(self) -> EspeakEngine | None:
        """The running engine, None before the first request or ``start``."""
        return self._engine

    def start(self) -> EspeakEngine:
        """Loads the library copies and starts the workers (blocking; not on an event loop)."""
        with self._lock:
            if self._engine is None:
                cfg = self.config
                engine = EspeakEngine(cfg.engines, cfg.buffer_ms, cfg.max_ahead_s,
                                      cfg.first_audio_ms, cfg.max_block_ms)
                if engine.sample_rate != self.sample_rate:
                    engine.close()
                    raise RuntimeError(f"eSpeak NG produces {engine.sample_rate} Hz, "
                                       f"not {self.sample_rate} Hz")
                self._engine = engine
            return self._engine

    def close(self) -> None:
        """Stops the engine (blocking); a later request starts a new one."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    async def _started(self) -> EspeakEngine:
        engine = self._engine
        return engine if engine is not None else await asyncio.to_thread(self.start)

    # --- voices ------------------------------------------------------------------------------

    async def _has_voice(self, engine: EspeakEngine, voice: str) -> bool:
        known = engine.known_voice(voice)
        return known if known is not None else await asyncio.to_thread(engine.check_voice, voice)

    def validate_voices(self, speakers) -> list[str]:
        """Problems with the eSpeak NG voices of ``speakers`` (blocking; starts the engine)."""
        engine = self.start()
        problems = []
        for speaker in speakers:
            settings = speaker.settings(self.name)
            voice = settings.get("voice") or self.config.default_voice
            if not isinstance(voice, str) or not engine.check_voice(voice):
                problems.append(f"speaker {speaker.name!r}: eSpeak NG has no voice {voice!r}")
            try:
                _parameters(settings, self.config)
            except RuntimeError as exc:
                problems.append(f"speaker {speaker.name!r}: {exc}")
        return problems

    async def _base_voice(self, engine: EspeakEngine, job: Job) -> str:
        voice = job.speaker.settings(self.name).get("voice") or self.config.default_voice
        if not isinstance(voice, str) or not await self._has_voice(engine, voice):
            raise RuntimeError(
                f"speaker {job.speaker.name!r}: eSpeak NG has no voice {voice!r} "
                f"(set `voice` under [synthesizers.espeak] in its voice file)")
        if job.language:
            # An explicit request language replaces the voice's language, keeping its variant.
            lang, variant = split_voice(voice)
            wanted = job.language.strip().lower().replace("_", "-")
            if wanted and wanted.split("-")[0] != lang.lower().split("-")[0]:
                for candidate in (wanted, wanted.split("-")[0]):
                    if await self._has_voice(engine, candidate + variant):
                        return candidate + variant
                log.warning("eSpeak NG has no voice for language %r; using %r", job.language, voice)
        return voice

    # --- synthesis ---------------------------------------------------------------------------

    async def plan(self, engine: EspeakEngine, job: Job) -> list[WorkItem]:
        """The job's chunks as work items, each with the voice that reads it."""
        base = await self._base_voice(engine, job)
        items: list[WorkItem] = []
        cfg = self.config
        for index, chunk in enumerate(job.chunks):
            texts = split_items(chunk, cfg.max_item_chars)
            for text, offset in zip(texts, item_offsets(clean(chunk), texts)):
                voice = voice_for(text, base)
                if voice != base and not await self._has_voice(engine, voice):
                    voice = base
                items.append(WorkItem(index, text, voice, offset))
        return items

    async def stream(self, job: Job) -> AsyncIterator[PCM]:
        """Yields PCM as eSpeak NG produces it; closing or cancelling this generator drops the
        request's queued work and aborts its synthesis at the next audio callback."""
        engine = await self._started()
        rate, pitch = _parameters(job.speaker.settings(self.name), self.config)
        rate = scaled_rate(rate, job.speed)
        items = await self.plan(engine, job)
        if not items:
            return
        max_block = max(1, self.config.max_block_ms * engine.sample_rate // 1000)
        marks = wants_words(job)
        handle = engine.open(items, rate, pitch, asyncio.get_running_loop(), marks)
        started = -1
        made: dict[int, int] = {}  # samples of each chunk taken so far (for word marks)
        try:
            channel = handle.channel
            while True:
                if not channel.items:
                    await channel.wait()
                message = channel.items.popleft()
                if message is END:
                    return
                if isinstance(message, BaseException):
                    raise message
                if isinstance(message, Marks):
                    _add_marks(job, message, made.get(message.chunk, 0), engine.sample_rate)
                    continue
                chunk, samples = message
                # Whatever else of the same chunk has arrived meanwhile goes in the same block.
                parts = [samples]
                size = len(samples)
                while (channel.items and size < max_block and isinstance(channel.items[0], tuple)
                       and channel.items[0][0] == chunk):
                    more = channel.items.popleft()[1]
                    parts.append(more)
                    size += len(more)
                engine.consumed(handle, size)
                if marks:
                    made[chunk] = made.get(chunk, 0) + size
                if chunk > started:
                    job.mark_chunk_started(chunk)
                    started = chunk
                block = parts[0] if len(parts) == 1 else np.concatenate(parts)
                yield PCM(block, engine.sample_rate)
        finally:
            engine.cancel(handle)


def _add_marks(job: Job, message: Marks, made: int, rate: int) -> None:
    """Records an item's word starts as the chunk's ``WordMarks``; ``made``: samples of the
    chunk taken so far, the item's last included."""
    text = job.chunks[message.chunk]
    positions = clean_positions(text)
    begin = made - message.samples
    add = word_marks(job).add
    for at, length, sample in message.words:
        if 0 <= at < len(positions):
            end = positions[min(at + max(length, 1), len(positions)) - 1] + 1
            add(message.chunk, positions[at], end, (begin + sample) / rate)


def scaled_rate(rate: int, speed: float) -> int:
    """``rate`` (words per minute) times ``speed``, clamped to eSpeak NG's supported range."""
    return max(MIN_RATE, min(MAX_RATE, round(rate * speed)))


def _parameters(settings: dict[str, Any], config: Config) -> tuple[int, int]:
    """(rate in words per minute, pitch 0-100) from the speaker's settings or the config."""
    rate = settings.get("rate", config.rate)
    pitch = settings.get("pitch", config.pitch)
    if rate is not None and (not isinstance(rate, int) or not MIN_RATE <= rate <= MAX_RATE):
        raise RuntimeError(f"eSpeak NG rate must be {MIN_RATE}-{MAX_RATE} words/min, not {rate!r}")
    if pitch is not None and (not isinstance(pitch, int) or not 0 <= pitch <= 100):
        raise RuntimeError(f"eSpeak NG pitch must be 0-100, not {pitch!r}")
    return (DEFAULT_RATE if rate is None else rate), (DEFAULT_PITCH if pitch is None else pitch)
