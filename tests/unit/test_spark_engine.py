"""The LLM engines on a tiny random Veena3 checkpoint: the contract every torch engine keeps
(run over ``torch`` and ``hf``), batched sampling, and the batched engine against the plain
Hugging Face reference (same logits, same tokens, whatever shares the batch)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.torch_threads import one_torch_thread  # noqa: F401 (autouse fixture)
from veena.plugins.spark.engine import (FinishReason, SamplingParams, TokenRequest, TokenSet,
                                        create_engine)

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def semantic(tokens) -> TokenSet:
    return TokenSet("semantic", tuple(int(i) for i in tokens.semantic_ids))


class Running:
    """An engine started on its own event loop."""

    def __init__(self, kind: str, ckpt: Path, **options) -> None:
        self.loop = asyncio.new_event_loop()
        self.engine = create_engine(kind, ckpt / "LLM", threads=1, **options)
        self.loop.run_until_complete(self.engine.start())

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def generate(self, requests: list[TokenRequest]) -> list[tuple[list[int], str]]:
        async def go():
            streams = [self.engine.submit(r) for r in requests]
            return await asyncio.gather(*(_collect(s) for s in streams))
        return self.run(go())

    def close(self) -> None:
        self.run(self.engine.close())
        self.loop.close()


async def _collect(stream) -> tuple[list[int], str]:
    return [t async for t in stream], stream.finish_reason


@pytest.fixture(scope="module", params=["torch", "hf"])
def engine(request, ckpt):
    running = Running(request.param, ckpt)
    yield running
    running.close()


@pytest.fixture(scope="module")
def hf(ckpt):
    running = Running("hf", ckpt)
    yield running
    running.close()


def _prompts(tokenizer, n: int) -> list[tuple[int, ...]]:
    texts = ["hi", "hello there", "a longer sentence to speak", "नमस्ते दुनिया", "x" * 40,
             "one two three four five six"]
    return [tuple(tokenizer.encode(f"<|task_tts|>{texts[i % len(texts)]}{'!' * (i // 6)}"
                                   "<|start_semantic_token|>", add_special_tokens=False))
            for i in range(n)]


# --- sampling -------------------------------------------------------------------------------

def _rows(params, vocab, seeds=None, steps=None, masks=None):
    from veena.plugins.spark.engine.sampling import RowParams, request_key

    n = len(params)
    keys = [request_key(s) for s in (seeds or [1] * n)]
    return RowParams.build(params, keys, steps or [0] * n, masks or [0] * n, vocab,
                           torch.device("cpu"))


def test_sampling_respects_mask_top_k_top_p_and_temperature():
    from veena.plugins.spark.engine.sampling import sample

    vocab = 1000
    logits = torch.randn(1, vocab, generator=torch.Generator().manual_seed(0))
    table = torch.ones(2, vocab, dtype=torch.bool)
    table[1] = False
    table[1, 500:600] = True
    allowed = logits[0].masked_fill(~table[1], float("-inf"))

    def draws(params, mask=1, n=300):
        rows = _rows([params] * n, vocab, seeds=list(range(n)), masks=[mask] * n)
        return sample(logits.expand(n, vocab), rows, table, params.top_k).tolist()

    picks = set(draws(SamplingParams(1.0, 50, 1.0)))
    assert picks <= set(range(500, 600)) and len(picks) > 10
    assert set(draws(SamplingParams(1.0, 5, 1.0))) <= set(torch.topk(allowed, 5).indices.tolist())
    best = int(torch.argmax(allowed))
    assert set(draws(SamplingParams(1.0, 50, 1e-6))) == {best}  # top-p keeps only the best
    assert set(draws(SamplingParams(0.0, 50, 1.0))) == {best}  # temperature 0 is greedy
    assert len(set(draws(SamplingParams(1.0, 1000, 1.0), mask=0))) > 100  # row 0 allows all


def test_sampling_follows_the_distribution():
    from veena.plugins.spark.engine.sampling import sample

    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log()[None, :]
    n = 20000
    rows = _rows([SamplingParams(1.0, 4, 1.0)] * n, 4, seeds=list(range(n)))
    counts = torch.bincount(sample(logits.expand(n, 4), rows, torch.ones(1, 4, dtype=torch.bool), 4),
                            minlength=4)
    assert torch.allclose(counts / n, probs, atol=0.015)


def test_a_rows_draw_depends_only_on_its_own_seed_and_step():
    from veena.plugins.spark.engine.sampling import sample

    vocab = 300
    logits = torch.randn(4, vocab, generator=torch.Generator().manual_seed(3))
    table = torch.ones(1, vocab, dtype=torch.bool)
    p = SamplingParams(1.0, 100, 0.95)
    alone = sample(logits[2:3], _rows([p], vocab, seeds=[7], steps=[5]), table, 100)
    batch = sample(logits, _rows([p] * 4, vocab, seeds=[1, 2, 7, 9], steps=[0, 3, 5, 1]), table, 100)
    assert int(batch[2]) == int(alone[0])
    steps = {int(sample(logits[2:3], _rows([p], vocab, seeds=[7], steps=[s]), table, 100))
             for s in range(40)}
    assert len(steps) > 5  # the stream moves on from step to step


def test_sampling_over_gathered_allowed_ids_draws_the_same_tokens():
    """What the decode graphs sample (``sample_allowed``, the allowed ids gathered first) is
    what ``sample`` over the whole masked vocabulary gives, row by row."""
    from veena.plugins.spark.engine.base import TokenSet
    from veena.plugins.spark.engine.sampling import MaskTable, RowParams, sample, sample_allowed

    vocab, n = 3000, 64
    masks = MaskTable(vocab, torch.device("cpu"), width=1024)
    semantic = masks.index(TokenSet("semantic", tuple(range(1000, 1800)) + (2990, 2991)))
    globals_ = masks.index(TokenSet("global", tuple(range(200, 700))))
    assert masks.index(TokenSet("too wide", tuple(range(2000)))) == 3
    assert masks.allowed.holds([semantic, globals_]) and not masks.allowed.holds([0])
    assert not masks.allowed.holds([3])
    logits = torch.randn(n, vocab, generator=torch.Generator().manual_seed(5))
    params = [SamplingParams(*p) for p in ((0.8, 50, 0.95), (1.0, 5, 1.0), (0.0, 50, 1.0),
                                           (1.3, 64, 0.5))]
    buffers = RowParams.buffers(2 * n, torch.device("cpu"))
    for step in range(3):
        batch = [params[i % len(params)] for i in range(n)]
        mask_rows = [semantic if i % 3 else globals_ for i in range(n)]
        args = (batch, [(7 * i + 1) << 3 for i in range(n)], [step] * n, mask_rows, vocab)
        rows = RowParams.build(*args, torch.device("cpu"))
        views = buffers.load(*args)
        assert views.step.data_ptr() == buffers.step.data_ptr()
        want = sample(logits, rows, masks.table, 64)
        assert torch.equal(sample_allowed(logits, views, masks.allowed, 64), want)
        assert all(int(t) in (range(1000, 1800) if m == semantic else range(200, 700))
                   or int(t) in (2990, 2991) for t, m in zip(want, mask_rows))


# --- the contract of every torch engine -----------------------------------------------------

def test_engine_stops_on_length_and_stop_ids(engine, tokenizer, tokens, semantic):
    prompt = _prompts(tokenizer, 1)[0]
    only_stop = TokenSet("stop", tokens.stop_ids[:1])
    (out1, r1), (out2, r2) = engine.generate([
        TokenRequest("a", prompt, 12, SamplingParams(seed=1), semantic, tokens.stop_ids),
        TokenRequest("b", prompt, 12, SamplingParams(seed=1), only_stop, tokens.stop_ids)])
    (out3, _), = engine.generate([
        TokenRequest("c", prompt, 12, SamplingParams(seed=1), semantic, tokens.stop_ids)])
    assert len(out1) == 12 and r1 == FinishReason.LENGTH
    assert all(tokens.semantic_value(t) is not None for t in out1)
    assert out2 == [] and r2 == FinishReason.STOP
    assert out3 == out1  # same seed, same tokens, alone or batched


def test_engine_abort_frees_the_request_and_others_continue(engine, tokenizer, semantic):
    eng = engine.engine
    prompt = _prompts(tokenizer, 1)[0]
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

    long, results = engine.run(run())
    after = eng.stats()
    assert long.finish_reason == FinishReason.ABORTED and long.generated < 5000
    assert [len(r[0]) for r in results] == [30, 30, 30]
    assert after["aborted"] == before["aborted"] + 1 and after["active"] == 0


def test_engine_rejects_an_empty_prompt(engine):
    async def submit():
        engine.engine.submit(TokenRequest("e", (), 5))
    with pytest.raises(ValueError):
        engine.run(submit())


# --- the batched engine against the reference -----------------------------------------------

def test_static_cache_model_matches_hugging_face_logits(hf, tokenizer):
    from veena.plugins.spark.engine.static_model import StaticQwen2

    model = hf.engine.model
    static = StaticQwen2(model, slots=3, max_len=128)
    prompts = _prompts(tokenizer, 3)
    with torch.inference_mode():
        width = max(len(p) for p in prompts)
        ids = torch.zeros(3, width, dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, :len(p)] = torch.tensor(p)
        last = torch.tensor([len(p) - 1 for p in prompts])
        got = static.forward(0, ids, torch.arange(width).expand(3, width), width, last)
        for i, p in enumerate(prompts):
            want = model(input_ids=torch.tensor([p])).logits[0, -1].float()
            assert torch.allclose(got[i], want, atol=1e-4), i
        # One decode step for all three rows at their own positions.
        nxt = torch.tensor([[7], [8], [9]])
        got = static.forward(0, nxt, last[:, None] + 1, width + 1)
        for i, p in enumerate(prompts):
            want = model(input_ids=torch.tensor([p + (7 + i,)])).logits[0, -1].float()
            assert torch.allclose(got[i], want, atol=1e-4), i


def test_fused_weights_are_the_modules_own_storage(ckpt):
    """The fused QKV and gate/up weights hold no second copy: the Hugging Face modules' weights
    are views of them (and still give Hugging Face's own logits, checked above)."""
    from veena.plugins.spark.engine.loading import load_causal_lm
    from veena.plugins.spark.engine.static_model import StaticQwen2

    model = load_causal_lm(ckpt / "LLM", torch.device("cpu"), torch.float32, 1)
    layer = model.model.layers[0]
    q = layer.self_attn.q_proj.weight.clone()
    static = StaticQwen2(model, slots=1, max_len=16)
    fused = static.fused[0]
    assert layer.self_attn.q_proj.weight.data_ptr() == fused.qkv.data_ptr()
    assert layer.mlp.gate_proj.weight.data_ptr() == fused.gate_up.data_ptr()
    assert torch.equal(layer.self_attn.q_proj.weight, q)
    k_rows = layer.self_attn.k_proj.weight.shape[0]
    assert torch.equal(fused.qkv[q.shape[0]:q.shape[0] + k_rows], layer.self_attn.k_proj.weight)


def test_batched_engine_gives_the_reference_tokens_whatever_shares_its_batch(ckpt, hf, tokenizer,
                                                                            tokens, semantic):
    prompts = _prompts(tokenizer, 7)
    requests = [TokenRequest(f"r{i}", p, 15 + 3 * i,
                             SamplingParams(0.0 if i % 3 == 0 else 0.9, 50, 0.95, seed=i),
                             semantic, tokens.stop_ids) for i, p in enumerate(prompts)]
    want = hf.generate(requests)
    batched = Running("torch", ckpt, slots=3, max_len=512)  # 7 requests, 3 slots: a queue
    try:
        assert batched.generate(requests) == want
        stats = batched.engine.stats()
        assert stats["completed"] == 7 and stats["active"] == 0 and stats["queued"] == 0
        assert stats["steps"] < sum(len(t) for t, _ in want)  # steps were shared
    finally:
        batched.close()


def test_long_prompts_are_prefilled_in_pieces_between_decode_steps(ckpt, hf, tokenizer, semantic):
    long_prompt = tuple(tokenizer.encode("<|task_tts|>" + "word " * 60, add_special_tokens=False))
    short = _prompts(tokenizer, 2)
    requests = [TokenRequest("s0", short[0], 40, SamplingParams(0.0), semantic),
                TokenRequest("long", long_prompt, 10, SamplingParams(0.7, seed=3), semantic),
                TokenRequest("s1", short[1], 20, SamplingParams(0.8, seed=4), semantic)]
    want = hf.generate(requests)
    batched = Running("torch", ckpt, slots=4, max_len=512, prefill_tokens=16)
    try:
        assert len(long_prompt) > 3 * 16
        assert batched.generate(requests) == want
    finally:
        batched.close()


def test_a_request_is_cut_to_what_its_slot_holds(ckpt, tokenizer, semantic):
    prompt = _prompts(tokenizer, 1)[0]
    batched = Running("torch", ckpt, slots=2, max_len=len(prompt) + 6)
    try:
        (out, reason), = batched.generate([TokenRequest("r", prompt, 100, SamplingParams(), semantic)])
        assert len(out) == 6 and reason == FinishReason.LENGTH

        async def too_long():
            batched.engine.submit(TokenRequest("x", prompt * 3, 5))
        with pytest.raises(ValueError, match="does not fit"):
            batched.run(too_long())
    finally:
        batched.close()


def test_waiting_requests_are_counted_and_abort_while_queued(ckpt, tokenizer, semantic):
    prompt = _prompts(tokenizer, 1)[0]
    batched = Running("torch", ckpt, slots=1, max_len=512)
    eng = batched.engine

    async def run():
        first = eng.submit(TokenRequest("first", prompt, 300, SamplingParams(), semantic))
        queued = [eng.submit(TokenRequest(f"q{i}", prompt, 5, SamplingParams(), semantic))
                  for i in range(3)]
        await anext(first)
        depth = eng.stats()["queued"]
        queued[0].abort()
        first.abort()
        results = await asyncio.gather(*(_collect(q) for q in queued))
        return depth, results

    try:
        depth, results = batched.run(run())
        assert depth == 3
        assert results[0] == ([], FinishReason.ABORTED)
        assert [len(r[0]) for r in results[1:]] == [5, 5]
    finally:
        batched.close()


def test_many_streams_get_their_tokens_in_groups_complete_and_in_order(ckpt, hf, tokenizer,
                                                                      semantic):
    prompts = _prompts(tokenizer, 36)
    requests = [TokenRequest(f"m{i}", p, 9, SamplingParams(0.9, seed=i), semantic)
                for i, p in enumerate(prompts)]
    want = hf.generate(requests)
    batched = Running("torch", ckpt, slots=36, max_len=256)  # 36 live: every 2 steps
    try:
        assert batched.generate(requests) == want
    finally:
        batched.close()
