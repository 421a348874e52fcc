"""Word timestamps in the core: offset maps of text rewrites (``platform/textmap.py``), the
built-in ``veena_align`` (exact marks or an estimate) and an aligner plugin on the hook, run
through the real pipeline with the embedded voice."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from veena.platform import textmap
from veena.platform.alignment import Alignment, WordMarks, WordTime, builtin
from veena.platform.audio import PCM
from veena.platform.config import parse_config
from veena.platform.hookspecs import hookimpl
from veena.platform.pipeline import Pipeline
from veena.platform.plugins import build_runtime
from veena.platform.schemas import GenerateRequest
from veena.platform.textmap import TextMap

SRC = "I need ₹2,50,000 by Monday."
OUT = "I need two lakh fifty thousand rupees by Monday."


def spans_of(src: str, out: str, m) -> dict[str, str]:
    return {w: src[slice(*m.source(out.index(w), out.index(w) + len(w)))]
            for w in out.replace(".", "").split()}


def test_between_maps_a_rewritten_item_whole_and_copies_exactly():
    got = spans_of(SRC, OUT, TextMap.between(SRC, OUT))
    assert got == {"I": "I", "need": "need", "two": "₹2,50,000", "lakh": "₹2,50,000",
                   "fifty": "₹2,50,000", "thousand": "₹2,50,000", "rupees": "₹2,50,000",
                   "by": "by", "Monday": "Monday"}
    m = TextMap.between(SRC, OUT)
    assert m.source(OUT.index("Monday") + 1, OUT.index("Monday") + 3) == (
        SRC.index("Monday") + 1, SRC.index("Monday") + 3)  # exact inside copied text


def test_between_on_indic_words_keeps_their_vowel_signs():
    src = "मुझे ₹5 चाहिए"
    out = "मुझे पाँच रुपये चाहिए"
    got = spans_of(src, out, TextMap.between(src, out))
    assert got == {"मुझे": "मुझे", "पाँच": "₹5", "रुपये": "₹5", "चाहिए": "चाहिए"}


def test_from_edits_and_a_recorded_rewrite_compose_with_the_normalizer():
    """A lexicon-like stage records its exact edits; the normalizer's change after it is worked
    out from the texts; the chain maps the final words to the client's characters."""
    client = "Call Veena at 5."
    lexicon = "Call Vee-na at 5."
    final = "Call Vee-na at five."
    exact = TextMap.from_edits(client, [(5, 10, "Vee-na")])
    assert exact.source(5, 11) == (5, 10) and exact.source(12, 14) == (11, 13)
    state: dict = {}
    textmap.record(state, client, lexicon, exact)
    m = textmap.original_map(client, final, state[textmap.Rewrites])
    assert client[slice(*m.source(final.index("five"), final.index("five") + 4))] == "5"
    assert client[slice(*m.source(5, 11))] == "Veena"
    assert client[slice(*m.source(0, 4))] == "Call"


MANY = ("I need ₹2,50,000 by Monday, Dr. Rao paid 2 kg rice & 3.5 litres at 5 pm. मुझे "
        "₹2,50,000 चाहिए, please call me. The 3rd of 4 items, i.e. 25%, costs $5.")


def test_between_keeps_words_between_rewrites_and_takes_no_anchor_from_symbols():
    from veena.plugins.normalize import TextNormalizer
    out = TextNormalizer().normalize_for(MANY)
    m = TextMap.between(MANY, out)
    got = [(w, MANY[slice(*m.source(out.index(w), out.index(w) + len(w)))])
           for w in ("rice", "litres", "चाहिए", "please", "items", "costs", "dollars")]
    assert got == [("rice", "rice"), ("litres", "litres"), ("चाहिए", "चाहिए"),
                   ("please", "please"), ("items", "items"), ("costs", "costs"),
                   ("dollars", "$5")]


def test_between_is_linear_in_the_text():
    """Repeated words made difflib's LCS take 15 s on 8,700 characters."""
    import time
    from veena.plugins.normalize import TextNormalizer
    text = " ".join([MANY] * 60)
    out = TextNormalizer().normalize_for(text)
    t0 = time.perf_counter()
    m = TextMap.between(text, out)
    assert time.perf_counter() - t0 < 3.0
    last = out.rindex("dollars")
    assert text[slice(*m.source(last, last + 7))] == "$5"
    assert m.source(last, last + 7)[0] > len(text) - 10


def test_inserted_words_map_to_an_empty_span_where_they_stand():
    m = TextMap.between("a b", "a x b")
    assert m.source(2, 3) == (1, 1)


def test_builtin_uses_the_synthesizers_marks_else_estimates():
    rate = 1000
    samples = np.zeros(3000, np.int16)
    samples[100:900] = 5000  # "one"
    samples[1200:2500] = 5000  # "two three" (one token read as two words)
    audio = PCM(samples, rate)

    class FakeJob:
        chunks = ["one two-three"]
        state: dict = {}

    job = FakeJob()
    estimated = builtin(job, 0, audio)
    assert [w.estimated for w in estimated] == [True, True]
    assert estimated[0].start == pytest.approx(0.1) and estimated[-1].end == pytest.approx(2.5)
    marks = WordMarks()
    marks.add(0, 0, 3, 0.1)
    marks.add(0, 4, 7, 1.2)
    marks.add(0, 8, 13, 1.8)  # inside the same token: one word
    job.state = {WordMarks: marks}
    exact = builtin(job, 0, audio)
    assert exact == [WordTime(0, 3, 0.1, 0.9, False), WordTime(4, 13, 1.2, 2.5, False)]


# --- the hook, through the real pipeline ---------------------------------------------------

class Aligner:
    """An aligner plugin: answers for every chunk, or defers (None), sync or async."""

    def __init__(self, mode: str) -> None:
        self.mode, self.calls = mode, []

    @hookimpl
    def veena_align(self, job, chunk, audio, runtime):
        self.calls.append((chunk, job.chunks[chunk], audio.seconds))
        if self.mode == "defer":
            return None
        words = [WordTime(0, len(job.chunks[chunk]), 0.0, audio.seconds, False)]
        if self.mode == "async":
            async def later():
                await asyncio.sleep(0)
                return words
            return later()
        return words


def run(text: str, plugin: Aligner | None) -> tuple[list[dict], float]:
    async def main():
        rt = build_runtime(parse_config({}), extra=[("aligner", plugin)] if plugin else [])
        pipeline = Pipeline(rt)
        job = pipeline.prepare(GenerateRequest(text=text, format="pcm"), "t")
        alignment = Alignment.attach(job)
        size = 0
        async for data in pipeline.audio(job, record=False):
            size += len(data)
        return alignment.pieces, size / 2 / job.output.sample_rate
    return asyncio.run(main())


TEXT = "The first sentence is here. And a second one follows it, a little longer than that."


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_aligner_plugin_answers_veena_align_first(mode):
    aligner = Aligner(mode)
    pieces, seconds = run(TEXT, aligner)
    assert [c for c, _, _ in aligner.calls] == [0, 1]
    assert [p["words"] for p in pieces] == [
        [{"text_start": 0, "text_end": 27, "start": 0.0, "end": pieces[0]["audio_end"],
          "estimated": False}],
        [{"text_start": 28, "text_end": len(TEXT), "start": pieces[1]["audio_start"],
          "end": pieces[1]["audio_end"], "estimated": False}]]
    assert pieces[1]["audio_end"] == pytest.approx(seconds, abs=1e-3)


def test_an_aligner_that_defers_leaves_the_embedded_voice_its_exact_marks():
    aligner = Aligner("defer")
    pieces, seconds = run(TEXT, aligner)
    assert len(aligner.calls) == 2 and sum(s for _, _, s in aligner.calls) == pytest.approx(
        seconds, abs=1e-3)
    words = [w for p in pieces for w in p["words"]]
    assert [TEXT[w["text_start"]:w["text_end"]] for w in words] == TEXT.split()
    assert not any(w["estimated"] for w in words)
    assert words == sorted(words, key=lambda w: w["start"])


def test_no_alignment_asked_no_hook_called():
    aligner = Aligner("sync")

    async def main():
        rt = build_runtime(parse_config({}), extra=[("aligner", aligner)])
        pipeline = Pipeline(rt)
        job = pipeline.prepare(GenerateRequest(text=TEXT, format="pcm"), "t")
        async for _ in pipeline.audio(job, record=False):
            pass
        assert WordMarks not in job.state
    asyncio.run(main())
    assert aligner.calls == []
