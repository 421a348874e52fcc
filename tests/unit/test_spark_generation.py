"""Token parsing, prompt building, sampling, the torch engine and the synthesizer in-process,
on a tiny random checkpoint built in the real format."""

from __future__ import annotations

import asyncio
import sys
import types
from pathlib import Path

import msgspec
import numpy as np
import pytest

from tests.support.spark_checkpoint import tiny_checkpoint
from tests.support.torch_threads import one_torch_thread  # noqa: F401 (autouse fixture)
from veena.platform.errors import ConfigError
from veena.platform.job import Job, OutputFormat, SamplingOptions
from veena.plugins.spark import Config, checkpoint_folder
from veena.plugins.spark.engine import (FinishReason, SamplingParams, TokenRequest, TokenSet,
                                        create_engine)
from veena.plugins.spark.prompt import PromptBuilder, VoiceSettings
from veena.plugins.spark.tokens import (END_GLOBAL, END_SEMANTIC, START_GLOBAL, START_SEMANTIC,
                                        TokenMap, VocabularyError, global_token, semantic_token)
from veena.speakers import load_catalog

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def tokenizer(ckpt):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ckpt / "LLM")


@pytest.fixture(scope="module")
def tokens(tokenizer) -> TokenMap:
    return TokenMap(tokenizer.get_vocab(), tokenizer.eos_token_id)


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


# --- sampling and the torch engine ----------------------------------------------------------

def test_sampling_respects_mask_top_k_and_top_p():
    from veena.plugins.spark.engine.torch_engine import sample_token

    logits = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1000, dtype=torch.bool)
    mask[500:600] = True
    gen = torch.Generator().manual_seed(1)
    picks = {sample_token(logits, SamplingParams(1.0, 50, 1.0), mask, gen) for _ in range(300)}
    assert picks <= set(range(500, 600)) and len(picks) > 10
    allowed = logits.masked_fill(~mask, float("-inf"))
    top5 = set(torch.topk(allowed, 5).indices.tolist())
    assert {sample_token(logits, SamplingParams(1.0, 5, 1.0), mask, gen) for _ in range(200)} <= top5
    best = int(torch.argmax(allowed))
    assert sample_token(logits, SamplingParams(1.0, 50, 1e-6), mask, gen) == best
    a = [sample_token(logits, SamplingParams(0.8, 50, 0.95), mask,
                      torch.Generator().manual_seed(9)) for _ in range(3)]
    assert len(set(a)) == 1


@pytest.fixture(scope="module")
def engine(ckpt):
    eng = create_engine("torch", ckpt / "LLM", threads=1)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(eng.start())
    yield eng, loop
    loop.run_until_complete(eng.close())
    loop.close()


def _collect(stream):
    async def go():
        return [t async for t in stream]
    return go()


def test_engine_stops_on_length_and_stop_ids(engine, tokenizer, tokens):
    eng, loop = engine
    prompt = tuple(tokenizer.encode("<|task_tts|>hi<|start_semantic_token|>", add_special_tokens=False))
    semantic = TokenSet("semantic", tuple(int(i) for i in tokens.semantic_ids))

    async def run():
        s1 = eng.submit(TokenRequest("a", prompt, 12, SamplingParams(seed=1), semantic, tokens.stop_ids))
        out1 = [t async for t in s1]
        only_stop = TokenSet("stop", tokens.stop_ids[:1])
        s2 = eng.submit(TokenRequest("b", prompt, 12, SamplingParams(seed=1), only_stop, tokens.stop_ids))
        out2 = [t async for t in s2]
        s3 = eng.submit(TokenRequest("c", prompt, 12, SamplingParams(seed=1), semantic, tokens.stop_ids))
        out3 = [t async for t in s3]
        return (out1, s1.finish_reason), (out2, s2.finish_reason), out3

    (out1, r1), (out2, r2), out3 = loop.run_until_complete(run())
    assert len(out1) == 12 and r1 == FinishReason.LENGTH
    assert all(tokens.semantic_value(t) is not None for t in out1)
    assert out2 == [] and r2 == FinishReason.STOP
    assert out3 == out1  # same seed, same tokens


def test_engine_abort_frees_the_request_and_others_continue(engine, tokenizer, tokens):
    eng, loop = engine
    prompt = tuple(tokenizer.encode("<|task_tts|>hello", add_special_tokens=False))
    semantic = TokenSet("semantic", tuple(int(i) for i in tokens.semantic_ids))
    before = eng.stats()

    async def run():
        long = eng.submit(TokenRequest("long", prompt, 5000, SamplingParams(), semantic))
        others = [eng.submit(TokenRequest(f"o{i}", prompt, 30, SamplingParams(seed=i), semantic))
                  for i in range(3)]
        got = 0
        async for _ in long:
            got += 1
            if got == 5:
                long.abort()
                long.abort()  # idempotent
                break
        results = await asyncio.gather(*(_collect(o) for o in others))
        for _ in range(100):
            if eng.stats()["active"] == 0:
                break
            await asyncio.sleep(0.02)
        return long, results

    long, results = loop.run_until_complete(run())
    after = eng.stats()
    assert long.finish_reason == FinishReason.ABORTED and long.generated < 5000
    assert [len(r) for r in results] == [30, 30, 30]
    assert after["aborted"] == before["aborted"] + 1 and after["active"] == 0


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


def _record_submits(engine, monkeypatch):
    seen: list[TokenRequest] = []
    original = engine.submit

    def submit(request):
        seen.append(request)
        return original(request)

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
    assert samples == 3 * 20 * 320 - 2 * 320  # three chunks, two 20 ms crossfades
    assert job.state["chunk_started"] == 2 and all(b.sample_rate == 16000 for b in blocks)
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
    assert len(first.samples) == 10 * 320  # the first block: 10 tokens
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
