"""Contract suite for synthesizers: a third party's voice passes the tests the built-in ones pass.

Subclass ``SynthesizerContract`` and give it a ``synthesizer`` fixture (the object, started if
it needs starting); override ``speaker`` with a voice it can speak, ``run`` when the
synthesizer lives on one event loop of its own (default: ``asyncio.run``, a fresh loop per
call), and ``in_use`` when it can say how many requests hold its resources::

    import pytest
    from veena.testing.synthesizers import SynthesizerContract

    class TestMyVoice(SynthesizerContract):
        @pytest.fixture
        def synthesizer(self):
            return MyVoice()

What is checked: the blocks are ``PCM`` at ``sample_rate``; ``job.mark_chunk_started(i)``
comes for each chunk, in order, before that chunk's audio; closing or cancelling a stream
part-way returns promptly and frees everything (``in_use`` back to zero, and afterwards more
requests than the voice has slots complete). The built-in synthesizers run it in
``tests/unit/test_contracts.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any, TypeVar

import numpy as np
import pytest

from veena.platform.audio import PCM
from veena.platform.job import Job, OutputFormat, SamplingOptions
from veena.platform.synthesis import Synthesizer
from veena.speakers import Speaker

T = TypeVar("T")

__all__ = ["CHUNKS", "MarkingJob", "SynthesizerContract", "make_job"]

CHUNKS = ["Hello there.", "This is the second sentence.", "Goodbye."]
"""The chunks every test speaks (short, so a neural voice stays quick)."""
CLOSE_TIMEOUT_S = 10.0
"""How long closing or cancelling a stream may take before it counts as hanging."""


class MarkingJob(Job):
    """A real Job that records each ``mark_chunk_started`` with the blocks seen before it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marks: list[tuple[int, int]] = []
        self.blocks = 0

    def mark_chunk_started(self, index: int) -> None:
        self.marks.append((index, self.blocks))
        super().mark_chunk_started(index)


def make_job(synthesizer: Synthesizer, speaker: Speaker, chunks: list[str] | None = None,
             sampling: SamplingOptions | None = None, request_id: str = "contract") -> MarkingJob:
    """A prepared job for ``synthesizer`` as the pipeline hands it over (chunks filled in)."""
    chunks = list(CHUNKS if chunks is None else chunks)
    return MarkingJob(request_id=request_id, text=" ".join(chunks), speaker=speaker,
                      synthesizer=synthesizer, output=OutputFormat(None, synthesizer.sample_rate),
                      sampling=sampling or SamplingOptions(seed=0), chunks=chunks,
                      normalized_text=" ".join(chunks))


async def _collect(synthesizer: Synthesizer, job: MarkingJob, take: int | None = None) -> list[PCM]:
    blocks: list[PCM] = []
    async with aclosing(synthesizer.stream(job)) as stream:
        async for block in stream:
            blocks.append(block)
            job.blocks = len(blocks)
            if take is not None and len(blocks) >= take:
                break
    return blocks


class SynthesizerContract:
    """What every synthesizer must do; subclass it with a ``synthesizer`` fixture."""

    slots = 4
    """Streams the voice serves at once at most; the cancellation test opens more than this."""

    @pytest.fixture
    def synthesizer(self) -> Synthesizer:
        raise NotImplementedError("give the suite a `synthesizer` fixture")

    @pytest.fixture
    def speaker(self) -> Speaker:
        """A voice the synthesizer can speak (default: one with no settings of its own)."""
        return Speaker(name="contract")

    @pytest.fixture
    def sampling(self) -> SamplingOptions:
        """Sampling for neural voices: seeded, and bounded so a random model ends."""
        return SamplingOptions(seed=0, max_tokens=60)

    @pytest.fixture
    def run(self) -> Callable[[Awaitable[T]], T]:
        """Runs a coroutine to completion on the loop the synthesizer works with."""
        return asyncio.run

    def in_use(self, synthesizer: Synthesizer) -> int | None:
        """Requests holding the synthesizer's resources now; None: it cannot tell."""
        return None

    def test_declares_name_and_rate(self, synthesizer):
        assert isinstance(synthesizer, Synthesizer)
        assert isinstance(synthesizer.name, str) and synthesizer.name
        assert isinstance(synthesizer.sample_rate, int) and synthesizer.sample_rate > 0

    def test_blocks_are_pcm_at_its_sample_rate(self, synthesizer, speaker, sampling, run):
        job = make_job(synthesizer, speaker, sampling=sampling)
        blocks = run(_collect(synthesizer, job))
        assert blocks, "the stream yielded no audio"
        for block in blocks:
            assert isinstance(block, PCM)
            assert block.sample_rate == synthesizer.sample_rate
            assert block.samples.dtype == np.int16 and block.samples.ndim == 1
        assert sum(len(b.samples) for b in blocks) > 0

    def test_marks_each_chunk_in_order_before_its_audio(self, synthesizer, speaker, sampling, run):
        job = make_job(synthesizer, speaker, sampling=sampling)
        run(_collect(synthesizer, job))
        marks = job.marks
        indices = [i for i, _ in marks]
        assert indices == sorted(indices) and len(set(indices)) == len(indices), marks
        assert indices and indices[0] == 0 and marks[0][1] == 0, "chunk 0 not marked first"
        assert indices[-1] == len(job.chunks) - 1 and job.chunk_started == len(job.chunks) - 1

    def test_closing_part_way_frees_everything(self, synthesizer, speaker, sampling, run):
        async def go() -> None:
            for n in range(self.slots * 2):  # more than its slots: a leaked one would block
                job = make_job(synthesizer, speaker, sampling=sampling, request_id=f"close{n}")
                await asyncio.wait_for(_collect(synthesizer, job, take=1), CLOSE_TIMEOUT_S)
            await asyncio.sleep(0)
            assert self.in_use(synthesizer) in (None, 0), "closed streams still hold resources"
            whole = make_job(synthesizer, speaker, sampling=sampling, request_id="after")
            blocks = await asyncio.wait_for(_collect(synthesizer, whole), CLOSE_TIMEOUT_S * 3)
            assert blocks and whole.chunk_started == len(whole.chunks) - 1
        run(go())

    def test_cancelling_the_consumer_frees_everything(self, synthesizer, speaker, sampling, run):
        async def go() -> None:
            tasks: list[asyncio.Task[Any]] = []
            for n in range(self.slots * 2):
                job = make_job(synthesizer, speaker, sampling=sampling, request_id=f"cancel{n}")
                tasks.append(asyncio.ensure_future(_collect(synthesizer, job)))
            await asyncio.sleep(0.05)
            for task in tasks:
                task.cancel()
            done, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
            assert not pending, f"{len(pending)} cancelled streams did not end"
            await asyncio.sleep(0)
            assert self.in_use(synthesizer) in (None, 0), "cancelled streams still hold resources"
            whole = make_job(synthesizer, speaker, sampling=sampling, request_id="after")
            blocks = await asyncio.wait_for(_collect(synthesizer, whole), CLOSE_TIMEOUT_S * 3)
            assert blocks
        run(go())
