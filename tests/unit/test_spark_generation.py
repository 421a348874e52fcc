"""Token parsing, prompt building and the synthesizer in-process (engines: test_spark_engine.py),
on a tiny random checkpoint built in the real format."""

from __future__ import annotations

import asyncio
import sys
import types

import msgspec
import numpy as np
import pytest

from tests.support.torch_threads import one_torch_thread  # noqa: F401 (autouse fixture)
from veena.platform.errors import ConfigError
from veena.platform.job import Job, OutputFormat, SamplingOptions
from veena.plugins.spark import Config, checkpoint_folder
from veena.plugins.spark.engine import SamplingParams, TokenRequest, TokenSet, create_engine
from veena.plugins.spark.prompt import PromptBuilder, VoiceSettings
from veena.plugins.spark.tokens import (END_GLOBAL, END_SEMANTIC, START_GLOBAL, START_SEMANTIC,
                                        TokenMap, VocabularyError, global_token, semantic_token)
from veena.speakers import load_catalog

torch = pytest.importorskip("torch")


# --- tokens and prompts ---------------------------------------------------------------------

def test_token_map_parses_speech_tokens(tokenizer, tokens):
    ids = tokenizer.encode(semantic_token(7) + semantic_token(8191) + "hi" + global_token(3)
                           + semantic_token(0) + END_SEMANTIC + semantic_token(5),
                           add_special_tokens=False)
    values, stopped = tokens.parse_semantic(ids)
    assert values == [7, 8191, 0] and stopped
    assert tokens.parse_global(ids) == [3]
    assert tokens.global_value(int(tokens.global_ids[4095])) == 4095
    assert tokens.semantic_value(int(tokens.global_ids[0])) is None
    assert tokenizer.eos_token_id in tokens.stop_ids


def test_token_map_rejects_a_foreign_tokenizer():
    with pytest.raises(VocabularyError, match="bicodec|start_content"):
        TokenMap({"hello": 0, "<|im_end|>": 1})


def test_prompts_for_both_phases(tokenizer, tokens):
    prompts = PromptBuilder(tokenizer, tokens)
    voice = VoiceSettings(control=["<|gender_1|>", "<|speed_label_3|>"])
    text = "नमस्ते <laugh> [whispers] hi<|end_content|><|bicodec_semantic_9|>"
    phase1 = prompts.global_phase(text, voice)
    as_text = tokenizer.decode(phase1)
    assert as_text == ("<|task_controllable_tts|><|start_content|>नमस्ते <laugh> [whispers] hi"
                       "<|end_content|><|start_style_label|><|gender_1|><|speed_label_3|>"
                       "<|end_style_label|><|start_global_token|>")
    globals_ = list(range(100, 132))
    phase2 = prompts.semantic_phase(text, voice, globals_)
    assert phase2[: len(phase1)] == phase1
    tail = phase2[len(phase1):]
    assert tokens.parse_global(tail) == globals_
    assert tail[-2:] == [tokens.id(END_GLOBAL), tokens.id(START_SEMANTIC)]
    plain = prompts.global_phase("hi", VoiceSettings(task="tts"))
    assert tokenizer.decode(plain).startswith("<|task_tts|>")
    assert "style_label" not in tokenizer.decode(plain) and plain[-1] == tokens.id(START_GLOBAL)


def test_catalog_voices_fit_the_vocabulary(tokenizer, tokens):
    prompts = PromptBuilder(tokenizer, tokens)
    voices = {s.name: VoiceSettings.parse(s.settings("spark"), s.name) for s in load_catalog()}
    assert set(voices) == {"kavya", "agastya", "maitri", "vinaya"}
    for name, v in voices.items():
        prompts.check(v, name)
    assert all(v.global_tokens is None for v in voices.values())  # none pinned until real ones exist
    with pytest.raises(VocabularyError, match="'x'.*<\\|nope\\|>"):
        prompts.check(VoiceSettings(control=["<|nope|>"]), "x")
    with pytest.raises(VocabularyError, match="32 integers"):
        VoiceSettings.parse({"global_tokens": [1, 2, 3]}, "x")
    with pytest.raises(VocabularyError, match="synthesizers.spark"):
        VoiceSettings.parse({"speaker": "x"}, "x")


# --- the synthesizer ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synth(ckpt):
    from veena.plugins.spark.synthesizer import SparkSynthesizer

    cfg = msgspec.convert({"model_path": str(ckpt), "threads": 1}, Config)
    s = SparkSynthesizer(cfg, ckpt)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(s.start(load_catalog()))
    yield s, loop
    loop.run_until_complete(s.close())
    loop.close()


PINNED = [(37 * i + 11) % 4096 for i in range(32)]


def _pinned(voice: str):
    """A catalog voice with 32 global tokens pinned in its spark settings."""
    speaker = {s.name: s for s in load_catalog()}[voice]
    spark = {**speaker.settings("spark"), "global_tokens": PINNED}
    return msgspec.structs.replace(speaker, name=f"{voice}_pinned", aliases=(),
                                   synthesizers={**speaker.synthesizers, "spark": spark})


def _job(voice, chunks: list[str], **sampling) -> Job:
    speaker = {s.name: s for s in load_catalog()}[voice] if isinstance(voice, str) else voice
    return Job(request_id="t", text=" ".join(chunks), speaker=speaker, synthesizer="spark",
               output=OutputFormat("wav", 16000), sampling=SamplingOptions(**sampling),
               chunks=chunks)


class _Seen(list):
    """Submitted requests, and their streams in ``streams``."""

    def __init__(self) -> None:
        super().__init__()
        self.streams: list = []


def _record_submits(engine, monkeypatch):
    seen: _Seen = _Seen()
    original = engine.submit

    def submit(request):
        seen.append(request)
        stream = original(request)
        seen.streams.append(stream)
        return stream


    monkeypatch.setattr(engine, "submit", submit)
    return seen


def test_long_text_reuses_the_first_chunks_global_tokens(synth, monkeypatch):
    s, loop = synth
    seen = _record_submits(s.engine, monkeypatch)
    job = _job("maitri", ["One.", "Two two.", "Three three three."], seed=3, max_tokens=20)

    async def run():
        return [p async for p in s.stream(job)]

    blocks = loop.run_until_complete(run())
    phases = [r.request_id.rsplit(":", 1)[1] for r in seen]
    assert phases == ["global", "semantic", "semantic", "semantic"]
    m = s._loaded
    globals_ = [m.tokens.parse_global(r.prompt_ids) for r in seen[1:]]
    assert len(globals_[0]) == 32 and globals_[0] == globals_[1] == globals_[2]
    samples = sum(len(b.samples) for b in blocks)
    generated = [st.generated for st in seen.streams[1:]]
    assert all(0 < g <= 20 for g in generated)
    assert samples == sum(generated) * 320 - 2 * 320  # three chunks, two 20 ms crossfades
    assert job.chunk_started == 2 and all(b.sample_rate == 16000 for b in blocks)
    # same seed, same audio
    again = loop.run_until_complete(run())
    assert np.array_equal(np.concatenate([b.samples for b in blocks]),
                          np.concatenate([b.samples for b in again]))


def test_pinned_voice_skips_the_global_phase(synth, monkeypatch):
    s, loop = synth
    seen = _record_submits(s.engine, monkeypatch)

    async def run():
        return [p async for p in s.stream(_job(_pinned("kavya"), ["Hello."], max_tokens=15))]

    loop.run_until_complete(run())
    assert [r.request_id.rsplit(":", 1)[1] for r in seen] == ["semantic"]
    assert s._loaded.tokens.parse_global(seen[0].prompt_ids) == PINNED


def test_closing_the_stream_aborts_the_engine_request(synth):
    s, loop = synth
    before = s.engine.stats()["aborted"]

    async def run():
        gen = s.stream(_job("kavya", ["A long sentence " * 40], max_tokens=3000))
        first = await anext(gen)
        await gen.aclose()
        for _ in range(200):
            stats = s.engine.stats()
            if stats["active"] == 0 and stats["aborted"] > before:
                return first, stats
            await asyncio.sleep(0.02)
        return first, s.engine.stats()

    first, stats = loop.run_until_complete(run())
    assert len(first.samples) == s.plan.first_block * 320  # the first block only
    assert stats["aborted"] == before + 1 and stats["active"] == 0


def test_token_limit(synth):
    s, _ = synth
    assert s.token_limit("hi", None) == 150  # the floor of the run-away guard
    assert s.token_limit("x" * 100, None) == 1500
    assert s.token_limit("x" * 1000, None) == 3000  # the configured cap
    assert s.token_limit("x" * 100, 40) == 40


# --- config and registration ----------------------------------------------------------------

def test_config_takes_the_model_path_from_the_environment(monkeypatch, ckpt):
    monkeypatch.setenv("VEENA_MODEL_PATH", str(ckpt))
    assert msgspec.convert({}, Config).model_path == str(ckpt)
    monkeypatch.delenv("VEENA_MODEL_PATH")
    assert msgspec.convert({}, Config).model_path is None
    with pytest.raises(msgspec.ValidationError, match="crossfade"):
        msgspec.convert({"window_lookahead": 0}, Config)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"engine": "onnx"}, Config)


def test_registration_needs_a_real_checkpoint(tmp_path, ckpt):
    from veena.platform.config import parse_config
    from veena.platform.plugins import build_runtime

    runtime = build_runtime(parse_config({}))
    assert "spark" not in runtime.synthesizers  # no model path: not offered, no error
    runtime = build_runtime(parse_config({"plugins": {"spark": {"model_path": str(ckpt)}}}))
    assert "spark" in runtime.synthesizers
    with pytest.raises(ConfigError, match="plugins.spark.model_path.*missing LLM"):
        checkpoint_folder(str(tmp_path))
    with pytest.raises(ConfigError, match="plugins.spark.window_lookahead|crossfade"):
        build_runtime(parse_config({"plugins": {"spark": {"window_lookahead": 0}}}))


# --- the vLLM adapter -----------------------------------------------------------------------

def test_vllm_adapter_maps_requests_and_aborts(monkeypatch, tmp_path):
    """vllm is absent here: a stand-in module records what the adapter asks of it."""
    calls: dict[str, list] = {"generate": [], "abort": []}

    class Output:
        def __init__(self, ids, finished, reason=None):
            self.outputs = [types.SimpleNamespace(token_ids=ids, finish_reason=reason)]
            self.finished = finished

    class FakeEngine:
        async def generate(self, prompt, params, request_id):
            calls["generate"].append((prompt, params, request_id))
            yield Output([5, 6], False)
            yield Output([5, 6, 7, 2], True, "stop")

        async def abort(self, request_id):
            calls["abort"].append(request_id)

    fake = types.ModuleType("vllm")
    fake.AsyncEngineArgs = lambda **kw: kw
    fake.AsyncLLMEngine = types.SimpleNamespace(from_engine_args=lambda args: FakeEngine())
    fake.SamplingParams = lambda **kw: kw
    monkeypatch.setitem(sys.modules, "vllm", fake)

    async def run():
        eng = create_engine("vllm", tmp_path, dtype="bfloat16", gpu_memory_utilization=0.5)
        await eng.start()
        req = TokenRequest("r", (1, 2, 3), 10, SamplingParams(0.7, 40, 0.9, 11),
                           TokenSet("s", (5, 6, 7, 2)), stop_ids=(2,))
        stream = eng.submit(req)
        out = [t async for t in stream]
        aborted = eng.submit(req)
        await anext(aborted)
        aborted.abort()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return out, stream.finish_reason, aborted.finish_reason, eng.stats()

    out, reason, aborted_reason, stats = asyncio.run(run())
    assert out == [5, 6, 7] and reason == "stop" and aborted_reason == "aborted"
    prompt, params, rid = calls["generate"][0]
    assert prompt == {"prompt_token_ids": [1, 2, 3]}
    assert params["allowed_token_ids"] == [5, 6, 7, 2] and params["stop_token_ids"] == [2]
    assert (params["temperature"], params["top_k"], params["top_p"], params["seed"],
            params["max_tokens"]) == (0.7, 40, 0.9, 11, 10)
    assert len(calls["abort"]) == 1 and calls["abort"][0].startswith("r#")
    assert stats["active"] == 0 and stats["aborted"] == 1


def test_decoder_batches_concurrent_windows_with_the_same_output(synth):
    s, loop = synth
    runner = s._loaded.runner
    rng = np.random.default_rng(0)
    windows = [tuple(int(t) for t in rng.integers(0, 8192, n)) for n in (34, 73, 73, 73, 34, 20)]

    async def run():
        d = await runner.speaker(PINNED)
        alone = [await runner.decode(w, d) for w in windows]
        before = runner.batches
        together = await asyncio.gather(*(runner.decode(w, d) for w in windows))
        batches = runner.batches - before
        runner.pad_rows = True  # as on a GPU: three windows of 73 run as four rows
        try:
            padded = await asyncio.gather(*(runner.decode(w, d) for w in windows))
        finally:
            runner.pad_rows = False
        return alone, together, padded, batches

    alone, together, padded, batches = loop.run_until_complete(run())
    for a, b, c, w in zip(alone, together, padded, windows):
        assert a.shape == c.shape == (len(w) * 320,)
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_allclose(a, c, atol=1e-5)
    # decode_workers=2: the first two windows go at once, then the rest by length: 73s, 34, 20
    assert batches < len(windows)


# --- speaking rate through the voice's own speed label ---------------------------------------

LEVELS = [0.6, 0.8, 1.0, 1.2, 1.4]


def _measured(voice: str):
    """A catalog voice whose TOML carries measured ``speed_levels``."""
    speaker = {s.name: s for s in load_catalog()}[voice]
    spark = {**speaker.settings("spark"), "speed_levels": LEVELS}
    return msgspec.structs.replace(speaker, name=f"{voice}_measured", aliases=(),
                                   synthesizers={**speaker.synthesizers, "spark": spark})


def test_speed_picks_the_nearest_measured_label():
    v = VoiceSettings.parse({"control": ["<|gender_0|>", "<|speed_label_2|>"],
                             "speed_levels": LEVELS}, "v")
    assert v.speed_label == 2
    assert v.at_speed(1.0) == (v, 1.0)
    faster, rate = v.at_speed(1.25)
    assert faster.control == ["<|gender_0|>", "<|speed_label_3|>"] and rate == 1.2
    assert v.at_speed(1.3)[1] == 1.4  # nearest on a log scale: ln(1.4/1.3) < ln(1.3/1.2)
    assert v.at_speed(0.25)[0].control[1] == "<|speed_label_0|>" and v.at_speed(4.0)[1] == 1.4
    # rates are relative to the voice's own label
    slow = VoiceSettings.parse({"control": ["<|speed_label_1|>"], "speed_levels": LEVELS}, "v")
    assert slow.at_speed(1.0)[1] == 1.0 and slow.at_speed(1.25) == (
        msgspec.structs.replace(slow, control=["<|speed_label_2|>"]), 1.25)
    # without measured levels the model's rate is not assumed
    plain = VoiceSettings.parse({"control": ["<|speed_label_2|>"]}, "v")
    assert plain.at_speed(2.0) == (plain, 1.0)


@pytest.mark.parametrize("table", [{"speed_levels": LEVELS},  # no speed label in control
                                   {"control": ["<|speed_label_2|>"], "speed_levels": [1.0, 2.0]},
                                   {"control": ["<|speed_label_2|>"],
                                    "speed_levels": [0, 1, 1, 1, 1]}])
def test_bad_speed_levels_are_refused(table):
    from veena.plugins.spark.tokens import VocabularyError

    with pytest.raises(VocabularyError, match="speed_levels"):
        VoiceSettings.parse(table, "v")


def test_request_speed_reaches_the_prompt_as_a_speed_label(synth, monkeypatch):
    s, loop = synth
    voice = _measured("kavya")
    assert s.speed_factor(1.4, voice) == 1.4 and s.speed_factor(1.1, _pinned("kavya")) == 1.0
    seen = _record_submits(s.engine, monkeypatch)
    job = _job(voice, ["Hello."], max_tokens=10)
    job.speed = 1.4

    async def run():
        return [p async for p in s.stream(job)]

    loop.run_until_complete(run())
    label = s._loaded.tokens.id("<|speed_label_4|>")
    assert all(label in r.prompt_ids for r in seen)
    assert s._loaded.tokens.id("<|speed_label_2|>") not in seen[0].prompt_ids
