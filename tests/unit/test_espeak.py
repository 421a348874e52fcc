"""The embedded eSpeak NG voice: real library, real threads, no server."""

from __future__ import annotations

import asyncio
import re
import time

import numpy as np
import pluggy
import pytest

from veena.platform.alignment import Alignment, WordMarks
from veena.platform.audio import PCM
from veena.platform.awaitables import await_all
from veena.platform.plugins import build_runtime
from veena.platform.config import parse_config
from veena.platform.errors import ConfigError
from veena.platform.job import Job, OutputFormat
from veena.platform import hookspecs
from veena.platform.config import plugin_settings
from veena.platform.runtime import Runtime
from veena.platform.synthesis import Synthesizer
import veena.plugins.espeak as espeak_plugin
from veena.plugins.espeak import Config
from veena.plugins.espeak import library
from veena.plugins.espeak.engine import END, EngineStream, WorkItem
from veena.plugins.espeak.synthesizer import EspeakSynthesizer
from veena.plugins.espeak.text import split_items, voice_for
from veena.speakers import Speaker, SpeakerCatalog, load_catalog

SPEAKERS = {s.name: s for s in load_catalog()}
ENGLISH = "The quick brown fox jumps over the lazy dog near the river bank."
HINDI = "नमस्ते, आज मौसम बहुत अच्छा है और हम बाज़ार जा रहे हैं।"
TELUGU = "నమస్కారం, ఈ రోజు వాతావరణం చాలా బాగుంది మరియు మేము బజారుకు వెళ్తున్నాము."
SENTENCES = [f"This is sentence number {i}, and it is long enough to take a moment to say."
             for i in range(40)]


def speaker(voice: str, **settings) -> Speaker:
    return Speaker(name=f"test-{voice}", synthesizers={"espeak": {"voice": voice, **settings}})


class RecordingJob(Job):
    """A real Job that also records every ``mark_chunk_started`` call."""

    def mark_chunk_started(self, index: int) -> None:
        self.state.setdefault("marks", []).append((index, self.state.get("blocks", 0)))
        super().mark_chunk_started(index)


def make_job(chunks: list[str] | str, who: Speaker | str = "kavya",
             language: str | None = None) -> RecordingJob:
    chunks = [chunks] if isinstance(chunks, str) else chunks
    spk = SPEAKERS[who] if isinstance(who, str) else who
    return RecordingJob(request_id="test", text=" ".join(chunks), speaker=spk,
                        synthesizer="espeak", output=OutputFormat("wav", 22050),
                        language=language, chunks=list(chunks))


async def collect(synth, job) -> tuple[list[PCM], list[float]]:
    """Every block of the job's stream and when it arrived (seconds from the start)."""
    blocks, times = [], []
    t0 = time.perf_counter()
    async for block in synth.stream(job):
        times.append(time.perf_counter() - t0)
        blocks.append(block)
        job.state["blocks"] = len(blocks)
    return blocks, times


def audio(blocks: list[PCM]) -> np.ndarray:
    return np.concatenate([b.samples for b in blocks]) if blocks else np.zeros(0, np.int16)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


async def wait_idle(engine, timeout: float) -> float:
    """Seconds until the engine holds no request; fails after ``timeout``."""
    t0 = time.perf_counter()
    while engine.active_jobs:
        assert time.perf_counter() - t0 < timeout, f"{engine.active_jobs} job(s) still active"
        await asyncio.sleep(0.005)
    return time.perf_counter() - t0


@pytest.fixture(scope="module")
def synth():
    s = EspeakSynthesizer(Config())
    yield s
    s.close()


# --- audio ------------------------------------------------------------------------------------

@pytest.mark.parametrize("who,text", [
    (speaker("en-us"), ENGLISH), ("kavya", ENGLISH),
    ("agastya", HINDI), ("kavya", HINDI),
    ("vinaya", TELUGU), ("maitri", TELUGU),
])
def test_speech_for_english_hindi_telugu(synth, who, text):
    blocks, _ = asyncio.run(collect(synth, make_job(text, who)))
    assert isinstance(synth, Synthesizer) and synth.sample_rate == 22050
    assert blocks and all(b.sample_rate == 22050 and b.samples.dtype == np.int16 for b in blocks)
    samples = audio(blocks)
    assert 1.0 < len(samples) / 22050 < 15.0
    assert rms(samples) > 500, "audio is silent"


def test_hindi_voice_reads_telugu_script_as_telugu(synth):
    # eSpeak NG's `hi` voice spells Telugu letter by letter ("telugu na, telugu ma, ..."), which
    # takes several times longer than reading it; the engine switches to `te` with the variant.
    assert voice_for(TELUGU, "hi+f3") == "te+f3" and voice_for(HINDI, "hi+f3") == "hi+f3"
    assert voice_for(ENGLISH, "te") == "te" and voice_for(HINDI, "te") == "te"
    kavya = len(audio(asyncio.run(collect(synth, make_job(TELUGU, "kavya")))[0]))
    telugu = len(audio(asyncio.run(collect(synth, make_job(TELUGU, speaker("te+f3"))))[0]))
    assert abs(kavya - telugu) / telugu < 0.15
    assert voice_for(TELUGU, "en-us") == "te"  # ... and so does every other voice

    async def raw(voice):  # the engine itself, without the switch
        engine = synth.start()
        handle = engine.open([WorkItem(0, TELUGU, voice)], 175, 50, asyncio.get_running_loop())
        n = 0
        while True:
            await handle.channel.wait()
            message = handle.channel.items.popleft()
            if message is END:
                return n
            n += len(message[1])

    assert asyncio.run(raw("hi+f3")) > 2 * telugu


def test_request_language_replaces_voice_language_keeping_variant(synth):
    job = make_job(ENGLISH, "kavya", language="en")
    items = asyncio.run(synth.plan(synth.start(), job))
    assert {i.voice for i in items} == {"en+f3"}
    job = make_job(ENGLISH, "kavya", language="xx-nonexistent")
    items = asyncio.run(synth.plan(synth.start(), job))
    assert {i.voice for i in items} == {"hi+f3"}


def test_rate_setting_changes_duration(synth):
    slow = audio(asyncio.run(collect(synth, make_job(ENGLISH, speaker("en-us", rate=100))))[0])
    fast = audio(asyncio.run(collect(synth, make_job(ENGLISH, speaker("en-us", rate=300))))[0])
    assert len(slow) > 2 * len(fast)


# --- streaming --------------------------------------------------------------------------------

def test_first_block_leaves_long_before_synthesis_ends(synth):
    engine = synth.start()
    seen_at_first = {}

    async def run():
        job = make_job(SENTENCES)
        blocks, times = [], []
        t0 = time.perf_counter()
        async for block in synth.stream(job):
            if not blocks:
                seen_at_first.update(active=engine.active_jobs, queued=engine.queued_items)
            times.append(time.perf_counter() - t0)
            blocks.append(block)
        return blocks, times

    blocks, times = asyncio.run(run())
    assert seen_at_first["active"] == 1 and seen_at_first["queued"] > 20, seen_at_first
    assert len(blocks) > 5
    assert times[0] < 0.2 * times[-1], f"first block at {times[0]:.3f}s of {times[-1]:.3f}s"
    assert len(audio(blocks)) / 22050 > 40 * 3
    assert engine.active_jobs == 0 and engine.queued_items == 0


def test_mark_chunk_started_in_order_before_each_chunks_audio(synth):
    chunks = ["First sentence here.", "", "Second one, with a clause.", "   ", "Third."]
    job = make_job(chunks)
    blocks, _ = asyncio.run(collect(synth, job))
    marks = job.state["marks"]
    assert [index for index, _ in marks] == [0, 2, 4]
    # Each mark came before any block of its chunk was handed on, and after the previous chunk's.
    assert [seen for _, seen in marks] == sorted(seen for _, seen in marks)
    assert marks[0][1] == 0 and marks[1][1] > 0 and marks[2][1] > marks[1][1]
    assert job.chunk_started == 4


# --- cancellation ------------------------------------------------------------------------------

def test_aclose_after_first_block_stops_synthesis_and_engine_recovers(synth):
    engine = synth.start()

    async def run():
        done_before = engine.items_done
        gen = synth.stream(make_job(SENTENCES))
        first = await anext(gen)
        assert first.samples.size and engine.active_jobs == 1
        await gen.aclose()
        idle_after = await wait_idle(engine, 0.5)
        assert engine.queued_items == 0
        assert engine.items_done - done_before < 10, "synthesis went on after aclose()"
        blocks, _ = await collect(synth, make_job(ENGLISH))
        return idle_after, blocks

    idle_after, blocks = asyncio.run(run())
    assert idle_after < 0.5
    assert len(audio(blocks)) / 22050 > 1.0 and engine.active_jobs == 0


def test_cancel_aborts_the_synthesis_in_progress_at_the_next_callback(synth):
    engine = synth.start()
    huge = " ".join(SENTENCES * 5)  # one item of ~15000 characters: about 17 minutes of speech

    async def run():
        aborted = engine.items_aborted
        handle = engine.open([WorkItem(0, huge, "en-us")], 175, 50, asyncio.get_running_loop())
        await handle.channel.wait()
        t0 = time.perf_counter()
        engine.cancel(handle)
        await wait_idle(engine, 0.5)
        stopped_after = time.perf_counter() - t0
        assert engine.items_aborted == aborted + 1
        return stopped_after, handle.produced / 22050

    stopped_after, produced_s = asyncio.run(run())
    assert stopped_after < 0.2 and produced_s < 120, (stopped_after, produced_s)


def test_cancelled_consumer_task_stops_synthesis(synth):
    engine = synth.start()

    async def consume(got_first: asyncio.Event):
        async for _ in synth.stream(make_job(SENTENCES * 3)):
            got_first.set()
            await asyncio.sleep(0.05)  # a slow client

    async def run():
        got_first = asyncio.Event()
        task = asyncio.create_task(consume(got_first))
        await asyncio.wait_for(got_first.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await wait_idle(engine, 0.5)

    assert asyncio.run(run()) < 0.5
    assert engine.alive_threads == engine.engines


def test_abandoned_loop_does_not_leave_work_behind(synth):
    engine = synth.start()

    async def run():
        gen = synth.stream(make_job(SENTENCES))
        await anext(gen)
        # asyncio.run closes the generator at loop shutdown (shutdown_asyncgens).

    asyncio.run(run())
    deadline = time.perf_counter() + 1.0
    while engine.active_jobs and time.perf_counter() < deadline:
        time.sleep(0.01)
    assert engine.active_jobs == 0 and engine.queued_items == 0


def test_slow_consumer_pauses_synthesis():
    synth = EspeakSynthesizer(Config(max_ahead_s=2.0))
    engine = synth.start()
    try:
        async def run():
            gen = synth.stream(make_job(SENTENCES))
            await anext(gen)
            await asyncio.sleep(0.3)  # long enough to synthesize everything without the cap
            done = engine.items_done
            assert done < 10, f"{done} items synthesized for a consumer that stopped reading"
            rest = [b async for b in gen]
            return rest

        rest = asyncio.run(run())
        assert len(audio(rest)) / 22050 > 100 and engine.active_jobs == 0
    finally:
        synth.close()


# --- concurrency ---------------------------------------------------------------------------------

def test_concurrent_streams_are_interleaved_and_complete(synth):
    texts = [SENTENCES[i * 5:(i + 1) * 5] for i in range(8)]

    async def run():
        return await asyncio.gather(*[collect(synth, make_job(t)) for t in texts])

    solo = [len(audio(asyncio.run(collect(synth, make_job(texts[i])))[0])) for i in (0, 7)]
    results = asyncio.run(run())
    firsts = [times[0] for _, times in results]
    lasts = [times[-1] for _, times in results]
    # Every request got its first audio before any request finished: not one after another.
    assert max(firsts) < min(lasts), (firsts, lasts)
    assert firsts[7] < lasts[0]
    for i, (blocks, _) in enumerate(results):
        samples = audio(blocks)
        assert rms(samples) > 500
        if i in (0, 7):
            assert abs(len(samples) - solo[i // 7]) / solo[i // 7] < 0.03
        assert len(samples) / 22050 > 5 * 3
    assert synth.engine.active_jobs == 0


def test_burst_of_new_requests_gets_a_taste_each_before_anyone_finishes(synth):
    # One long sentence each, no clause punctuation: without the taste every request would be
    # synthesized whole before the next one starts.
    long_sentence = ("Veena streams speech while it is being synthesized and every request "
                     "passes each stage exactly once so that the first audio leaves early")
    engine = synth.start()
    cut_before = engine.items_cut

    async def run():
        return await asyncio.gather(*[collect(synth, make_job(long_sentence)) for _ in range(10)])

    solo = len(audio(asyncio.run(collect(synth, make_job(long_sentence)))[0]))
    results = asyncio.run(run())
    firsts = [times[0] for _, times in results]
    lasts = [times[-1] for _, times in results]
    assert max(firsts) < min(lasts), (firsts, lasts)
    assert engine.items_cut - cut_before >= 8
    for blocks, _ in results:
        samples = audio(blocks)
        assert abs(len(samples) - solo) / solo < 0.1 and rms(samples) > 500
    # ... but a request alone is never cut.
    cut_before = engine.items_cut
    asyncio.run(collect(synth, make_job(long_sentence)))
    assert engine.items_cut == cut_before


def test_taste_cut_restarts_at_a_word_boundary_for_indic_text(synth):
    engine = synth.start()
    text = " ".join([TELUGU.rstrip(".")] * 3) + "."

    async def run():
        # One item in taste mode, by hand, on a stream the workers do not know about.
        handle = EngineStream([], 175, 50, asyncio.get_running_loop())
        with engine._libs[0].lock:
            outcome, rest = engine._synthesize(engine._libs[0], handle, WorkItem(0, text, "te"),
                                               taste=engine.first_audio)
        await asyncio.sleep(0.05)
        return outcome, rest, sum(len(m[1]) for m in handle.channel.items)

    outcome, rest, sent = asyncio.run(run())
    assert outcome == "cut" and text.endswith(rest.text) and len(rest.text) < len(text)
    assert text[len(text) - len(rest.text) - 1] == " "
    assert engine.first_audio <= sent < 5 * 22050


# --- word marks (exact word timestamps) --------------------------------------------------------

def _marked(text: str | list[str], n: int = 1) -> list[tuple[RecordingJob, np.ndarray]]:
    """``n`` jobs at once, each asking for word times; their jobs and audio."""
    jobs = [make_job(text) for _ in range(n)]
    for job in jobs:
        Alignment.attach(job)

    async def run():
        return await asyncio.gather(*[collect(_SYNTH, job) for job in jobs])

    return [(job, audio(blocks)) for job, (blocks, _) in zip(jobs, asyncio.run(run()))]


_SYNTH = EspeakSynthesizer(Config())


@pytest.mark.parametrize("chunks", [
    ["Hello world, this is a test.", "A second  chunk, with\ttabs and  spaces."],
    [HINDI, "मुझे दो लाख रुपये चाहिए, please call me."],
])
def test_word_marks_name_every_word_of_each_chunk_in_order(chunks):
    ((job, samples),) = _marked(chunks)
    marks = job.state[WordMarks].by_chunk
    assert sorted(marks) == list(range(len(chunks)))
    for i, chunk in enumerate(chunks):
        got = marks[i]
        words = {m.start(): m.group().strip(",.।") for m in re.finditer(r"\S+", chunk)}
        # each mark is a word of the chunk, where it stands, in order; eSpeak NG reads a few
        # pairs ("that the") as one word, so nearly every word has its own mark
        assert all(chunk[a:b].strip(",.।") == words.get(a) for a, b, _ in got), got
        assert len(got) >= len(words) - 1
        seconds = [t for _, _, t in got]
        assert seconds == sorted(seconds) and seconds[0] < 0.05
    # chunk-relative times: the last word of every chunk starts inside the audio
    assert all(m[-1][2] < len(samples) / 22050 for m in marks.values())


def test_word_marks_survive_the_taste_cut_of_a_burst():
    """Ten requests at once: first turns are cut after a taste and restarted from the next
    word; every word is still marked once, at its place in the chunk."""
    sentence = ("Veena streams speech while it is being synthesized and every request "
                "passes each stage exactly once so that the first audio leaves early")
    engine = _SYNTH.start()
    ((solo, _),) = _marked(sentence)
    alone = [(a, b) for a, b, _ in solo.state[WordMarks].by_chunk[0]]
    assert len(alone) >= len(sentence.split()) - 1
    cut = engine.items_cut
    results = _marked(sentence, 10)
    assert engine.items_cut - cut >= 8
    for job, samples in results:
        got = job.state[WordMarks].by_chunk[0]
        assert [(a, b) for a, b, _ in got] == alone
        seconds = [t for _, _, t in got]
        assert seconds == sorted(seconds) and seconds[-1] < len(samples) / 22050


def test_no_marks_unless_asked(synth):
    job = make_job("Hello world.")
    asyncio.run(collect(synth, job))
    assert WordMarks not in job.state


def test_two_private_library_copies_run_side_by_side():
    synth = EspeakSynthesizer(Config(engines=2))
    engine = synth.start()
    try:
        libs = engine._libs
        assert len({lib.handle for lib in libs}) == 2
        assert len({lib.state_address() for lib in libs}) == 2
        assert library.loaded_count() >= 2

        async def run():
            jobs = [make_job(SENTENCES[:6], speaker("en-us")), make_job([TELUGU] * 6, "vinaya"),
                    make_job([HINDI] * 6, "agastya"), make_job(SENTENCES[6:12], "kavya")]
            return await asyncio.gather(*[collect(synth, j) for j in jobs])

        results = asyncio.run(run())
        for blocks, _ in results:
            samples = audio(blocks)
            assert len(samples) / 22050 > 6 and rms(samples) > 500
        assert engine.active_jobs == 0
    finally:
        synth.close()
    # The copies went back to the pool: a new engine reuses them instead of loading more.
    before = library.loaded_count()
    again = EspeakSynthesizer(Config(engines=2))
    again.start()
    again.close()
    assert library.loaded_count() == before


# --- odd input and errors ---------------------------------------------------------------------

def test_empty_and_odd_input_does_not_crash(synth):
    assert asyncio.run(collect(synth, make_job(["", "   ", "\n\t"])))[0] == []
    odd = ["Hello 😀🎉 there.", "\x00\x01\x07 bell \x1b[31m red \u200b\u200c.", "\ud800 lone.",
           "<speak>not markup</speak> & more", "...", "ok"]
    blocks, _ = asyncio.run(collect(synth, make_job(odd)))
    assert len(audio(blocks)) / 22050 > 2.0
    assert synth.engine.active_jobs == 0


def test_very_long_chunk_is_split_into_turns(synth):
    words = " ".join(["word"] * 500)  # 2499 characters, no punctuation at all
    items = split_items(words, 300)
    assert len(items) == 9 and all(len(i) <= 300 for i in items)
    assert " ".join(items) == words
    engine = synth.start()
    done = engine.items_done
    blocks, _ = asyncio.run(collect(synth, make_job(words)))
    assert engine.items_done - done == len(split_items(words, 300))
    assert len(audio(blocks)) / 22050 > 60


def test_split_items_cuts_after_clause_punctuation_and_keeps_it():
    text = "Hello there, how are you today; I hope: all is well, thanks."
    assert split_items(text, 30) == ["Hello there,", "how are you today; I hope:", "all is well, thanks."]
    assert split_items(text, 300) == [text]
    assert split_items("1,000 and 2,5", 5) == ["1,000", "and", "2,5"]
    assert split_items(" \x00 ", 300) == []


def test_unknown_voice_raises_a_clear_error(synth):
    for voice in ("xx-nonexistent", "hi+nosuchvariant"):
        job = make_job(ENGLISH, speaker(voice))

        async def run():
            return await collect(synth, job)

        with pytest.raises(RuntimeError, match=re.escape(f"no voice '{voice}'") + ".*synthesizers.espeak"):
            asyncio.run(run())
    problems = synth.validate_voices([speaker("xx-nonexistent"), speaker("en-us", rate=1000),
                                      *SPEAKERS.values()])
    assert len(problems) == 2 and "xx-nonexistent" in problems[0] and "rate" in problems[1]
    assert synth.engine.active_jobs == 0


# --- the plugin -------------------------------------------------------------------------------

def plugin_runtime(table: dict) -> Runtime:
    """The real runtime, with ``table`` as the ``[plugins.espeak]`` settings."""
    return build_runtime(parse_config({"plugins": {"espeak": table}}))


def test_plugin_registers_configures_starts_and_stops():
    runtime = plugin_runtime({"engines": 2, "buffer_ms": 50, "rate": 200})
    synth = runtime.synthesizers.get("espeak")
    assert isinstance(synth, EspeakSynthesizer) and synth.engine is None
    assert synth.config.engines == 2 and synth.config.rate == 200

    async def lifecycle():
        await await_all(runtime.pm.hook.veena_startup(runtime=runtime))
        engine = synth.engine
        assert engine is not None and engine.engines == 2
        blocks, _ = await collect(synth, make_job(ENGLISH))
        await await_all(runtime.pm.hook.veena_shutdown(runtime=runtime))
        return engine, blocks

    engine, blocks = asyncio.run(lifecycle())
    assert len(audio(blocks)) / 22050 > 1.0
    assert synth.engine is None and engine.alive_threads == 0
    with pytest.raises(ConfigError, match="plugins.espeak.engine`: unknown key"):
        plugin_settings("espeak", Config, {"engine": 2})
    with pytest.raises(ConfigError, match="plugins.espeak.engines"):
        plugin_settings("espeak", Config, {"engines": 0})


def test_startup_fails_on_a_speaker_with_an_unknown_voice():
    runtime = plugin_runtime({})
    runtime.speakers.add(Speaker(name="broken", synthesizers={"espeak": {"voice": "xx-nope"}}))

    async def startup():
        await await_all(runtime.pm.hook.veena_startup(runtime=runtime))

    try:
        with pytest.raises(ConfigError, match="'broken': eSpeak NG has no voice 'xx-nope'"):
            asyncio.run(startup())
    finally:
        runtime.synthesizers.get("espeak").close()
