"""AP-BWE super-resolution: checkpoint format, model, exact streaming, the plugin in a pipeline.

All on CPU with random weights written in the released checkpoint format."""

import asyncio
import json
import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.support.tone import ToneSynthesizer  # noqa: E402
from veena.platform.audio import PCM  # noqa: E402
from veena.platform.awaitables import await_all  # noqa: E402
from veena.platform.config import parse_config  # noqa: E402
from veena.platform.errors import ConfigError  # noqa: E402
from veena.platform.hookspecs import hookimpl  # noqa: E402
from veena.platform.pipeline import Pipeline  # noqa: E402
from veena.platform.plugins import build_runtime  # noqa: E402
from veena.platform.schemas import GenerateRequest  # noqa: E402
from veena.plugins.apbwe import Config, Spent, super_resolve  # noqa: E402
from veena.plugins.apbwe.checkpoint import (CheckpointError, find_checkpoint,  # noqa: E402
                                            load_generator, write_random_checkpoint)
from veena.plugins.apbwe.dsp import enhance_reference, upsample  # noqa: E402
from veena.plugins.apbwe.engine import Engine  # noqa: E402
from veena.plugins.apbwe.model import APBWEConfig, APBWEGenerator  # noqa: E402
from veena.plugins.apbwe.graphs import BucketRunner  # noqa: E402
from veena.plugins.apbwe.rows import frames_bound  # noqa: E402
from veena.plugins.apbwe.streaming import (PackedWeights, StreamState, Work,  # noqa: E402
                                           advance, plan_row, run_step)
from veena.speakers import Speaker  # noqa: E402

SEAM_TOLERANCE = 1e-4
"""Largest |streamed - whole-utterance| sample allowed (full scale 1.0), i.e. -80 dBFS. The
measured error is float rounding, about 1e-6 (docs/benchmarks.md)."""


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """A gliding harmonic tone with noise bursts, band-limited by nature to 16 kHz sampling."""
    rng = np.random.default_rng(seed)
    n = int(16000 * seconds)
    t = np.arange(n) / 16000
    f0 = 120 + 60 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(0.25 / k * np.sin(k * phase) for k in range(1, 12))
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * 2.3 * t) ** 2
    x += 0.02 * rng.standard_normal(n) * (np.sin(2 * np.pi * 1.1 * t) > 0.6)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("apbwe-small")
    write_random_checkpoint(folder, channels=48, layers=3, seed=3)
    return folder


@pytest.fixture(scope="module")
def full_model():
    return APBWEGenerator(APBWEConfig()).randomize(7).eval()


def stream_through(packed, x, cuts, final_empty=False, runner=None):
    """Feeds ``x`` in blocks of the sizes ``cuts`` (cycled); returns the joined output."""
    state, outs, pos, i = StreamState(packed.config), [], 0, 0
    while pos < len(x):
        k = cuts[i % len(cuts)]
        i += 1
        last = pos + k >= len(x) and not final_empty
        work = Work(state, x[pos:pos + k], last)
        run_step(packed, [work], runner)
        outs.append(work.out)
        pos += k
    if final_empty or not len(x):
        work = Work(state, np.zeros(0, np.float32), True)
        run_step(packed, [work], runner)
        outs.append(work.out)
    return np.concatenate(outs)


# --- checkpoint format -------------------------------------------------------------------------

def test_state_dict_has_the_released_names_and_shapes():
    state = APBWEGenerator(APBWEConfig()).state_dict()
    expected = {"conv_pre_mag.weight": (512, 513, 7), "conv_pre_mag.bias": (512,),
                "norm_pre_mag.weight": (512,), "conv_pre_pha.weight": (512, 513, 7),
                "norm_post_pha.bias": (512,), "linear_post_mag.weight": (513, 512),
                "linear_post_pha_r.weight": (513, 512), "linear_post_pha_i.bias": (513,)}
    for i in range(8):
        for stack in ("mag", "pha"):
            p = f"convnext_{stack}.{i}."
            expected |= {p + "dwconv.weight": (512, 1, 7), p + "dwconv.bias": (512,),
                         p + "norm.weight": (512,), p + "norm.bias": (512,),
                         p + "pwconv1.weight": (1536, 512), p + "pwconv1.bias": (1536,),
                         p + "pwconv2.weight": (512, 1536), p + "pwconv2.bias": (512,),
                         p + "gamma": (512,)}
    for name, shape in expected.items():
        assert tuple(state[name].shape) == shape, name
    assert len(state) == 8 + 4 + 6 + 8 * 2 * 9  # embeddings+norms, post norms, heads, blocks
    assert sum(v.numel() for v in state.values()) / 1e6 == pytest.approx(29.8, abs=0.1)


def test_random_checkpoint_is_in_the_released_layout(small_ckpt):
    weights, config = find_checkpoint(small_ckpt)
    assert weights.name.startswith("g_") and config.name == "config.json"
    data = torch.load(weights, weights_only=True)
    assert set(data) == {"generator"}
    keys = json.loads(config.read_text())
    for key in ("ConvNeXt_channels", "ConvNeXt_layers", "n_fft", "hop_size", "win_size",
                "hr_sampling_rate", "lr_sampling_rate"):
        assert key in keys
    assert (keys["n_fft"], keys["hop_size"], keys["win_size"]) == (1024, 80, 320)
    model = load_generator(weights)  # the file itself works as well as its folder
    assert model.config.channels == 48 and model.config.layers == 3


def test_checkpoint_saved_from_data_parallel_loads(tmp_path, small_ckpt):
    weights, config = find_checkpoint(small_ckpt)
    state = torch.load(weights, weights_only=True)["generator"]
    (tmp_path / "config.json").write_text(config.read_text())
    torch.save({"generator": {"module." + k: v for k, v in state.items()}}, tmp_path / "g_00100000")
    torch.save({"generator": {}}, tmp_path / "g_00000001")  # older file, not picked
    model = load_generator(tmp_path)
    assert torch.equal(model.conv_pre_mag.weight, state["conv_pre_mag.weight"])


@pytest.mark.parametrize("damage", ["no_config", "no_generator", "wrong_shape", "garbage"])
def test_broken_checkpoints_raise_checkpoint_error(tmp_path, small_ckpt, damage):
    weights, config = find_checkpoint(small_ckpt)
    state = torch.load(weights, weights_only=True)["generator"]
    if damage != "no_config":
        cfg = json.loads(config.read_text())
        if damage == "wrong_shape":
            cfg["ConvNeXt_channels"] = 64
        (tmp_path / "config.json").write_text(json.dumps(cfg))
    target = tmp_path / "g_1"
    if damage == "no_generator":
        torch.save({"discriminator": state}, target)
    elif damage == "garbage":
        target.write_bytes(b"not a checkpoint")
    else:
        torch.save({"generator": state}, target)
    with pytest.raises(CheckpointError):
        load_generator(tmp_path)


# --- model and signal path ---------------------------------------------------------------------

def test_resampler_is_the_training_filter():
    # a tone far below the cutoff comes out as the same tone at three times the rate
    t16 = np.arange(1600) / 16000
    y = upsample(np.sin(2 * np.pi * 1000 * t16).astype(np.float32), 3)
    assert len(y) == 4800
    t48 = np.arange(4800) / 48000
    interior = slice(300, -300)
    assert np.abs(y - np.sin(2 * np.pi * 1000 * t48))[interior].max() < 2e-3
    # original samples land on every third output sample, nearly unchanged
    assert np.abs(y[::3] - np.sin(2 * np.pi * 1000 * t16))[100:-100].max() < 2e-3


def test_streaming_step_equals_the_original_inference(full_model):
    x = speechlike(0.6)
    ref = enhance_reference(full_model, x)
    packed = PackedWeights(full_model, "cpu", torch.float32)
    out = stream_through(packed, x, [len(x)])
    assert out.shape == (3 * len(x),)
    assert np.abs(out - ref).max() < 1e-5
    # with torch.angle's coin-toss phases on the real axis (see stable_phase) only the start,
    # where the first frame is symmetric, can differ: beyond the receptive field it is equal
    original = enhance_reference(full_model, x, original_phase=True)
    settled = (27 + 2) * 80 + 160
    assert np.abs(out - original)[settled:].max() < 1e-5


@pytest.mark.parametrize("size,cuts", [("full", [320]), ("full", [1, 37, 4000]),
                                        ("small", [2500, 13]), ("small", [83])])
def test_streaming_equals_whole_utterance_within_seam_tolerance(full_model, small_ckpt, size, cuts):
    model = full_model if size == "full" else load_generator(small_ckpt)
    x = speechlike(0.4 if size == "full" else 0.2, seed=len(cuts))
    packed = PackedWeights(model, "cpu", torch.float32)
    whole = stream_through(packed, x, [len(x)])
    streamed = stream_through(packed, x, cuts, final_empty=len(cuts) == 1)
    assert streamed.shape == whole.shape == (3 * len(x),)
    assert np.abs(streamed - whole).max() < SEAM_TOLERANCE


@pytest.mark.parametrize("n", [0, 1, 40, 53, 54, 200, 1601])
def test_every_length_gives_three_times_the_samples(small_ckpt, n):
    packed = PackedWeights(load_generator(small_ckpt), "cpu", torch.float32)
    x = speechlike(0.2)[:n]
    assert stream_through(packed, x, [max(n, 1)]).shape == (3 * n,)
    assert stream_through(packed, x, [17]).shape == (3 * n,)


def batched_through(packed, signals, block, runner=None):
    """All signals as concurrent streams in blocks of ``block``, sharing every step."""
    states = [StreamState(packed.config) for _ in signals]
    outs = [[] for _ in signals]
    for pos in range(0, max(len(x) for x in signals), block):
        works = [Work(s, x[pos:pos + block], pos + block >= len(x))
                 for s, x in zip(states, signals) if pos < len(x)]
        run_step(packed, works, runner)
        for w in works:
            outs[states.index(w.state)].append(w.out)
    return [np.concatenate(o) for o in outs]


def test_streams_batched_together_equal_each_alone(small_ckpt):
    packed = PackedWeights(load_generator(small_ckpt), "cpu", torch.float32)
    signals = [speechlike(s, seed=i) for i, s in enumerate((0.3, 0.05, 0.7, 0.01))]
    alone = [stream_through(packed, x, [1000]) for x in signals]
    for a, o in zip(alone, batched_through(packed, signals, 1000)):
        assert np.abs(o - a).max() < SEAM_TOLERANCE


# --- bucketed shapes (what CUDA graphs replay) ---------------------------------------------------

@pytest.mark.parametrize("size", ["small", "full"])
def test_padded_bucket_rows_equal_exact_rows(full_model, small_ckpt, size):
    # the runner pads batch and length to its buckets and runs the very function a CUDA graph
    # captures, eagerly; padding rows and columns must not change the real rows
    model = full_model if size == "full" else load_generator(small_ckpt)
    packed = PackedWeights(model, "cpu", torch.float32)
    runner = BucketRunner(packed, capture=False, batches=(1, 2, 4), block_ms=(10, 50, 250))
    signals = [speechlike(s, seed=i) for i, s in enumerate((0.35, 0.05, 0.3, 0.003, 0.2))]
    if size == "full":
        signals = signals[:3]
    for block in (800, 3000):
        exact = batched_through(packed, signals, block)
        padded = batched_through(packed, signals, block, runner)
        for e, p, x in zip(exact, padded, signals):
            assert p.shape == e.shape == (3 * len(x),)
            assert np.abs(p - e).max() < SEAM_TOLERANCE
    assert runner.padded_eager > 0 and runner.unbucketed == 0
    # a block beyond the largest bucket runs at its exact shape instead
    x = signals[0]
    assert np.abs(stream_through(packed, x, [len(x)], runner=runner)
                  - stream_through(packed, x, [len(x)])).max() < SEAM_TOLERANCE
    assert runner.unbucketed == 1


def test_rows_of_different_block_lengths_run_in_their_own_buckets(small_ckpt):
    packed = PackedWeights(load_generator(small_ckpt), "cpu", torch.float32)
    runner = BucketRunner(packed, capture=False, batches=(1, 2, 4), block_ms=(10, 50, 250))
    signals = [speechlike(0.5, seed=i) for i in range(4)]
    blocks = [160, 800, 800, 4000]  # 10, 50, 50 and 250 ms per step, all in the same steps
    states = [StreamState(packed.config) for _ in signals]
    outs = [[] for _ in signals]
    steps = 0
    while any(not s.finished for s in states):
        works = []
        for i, (st, x, b) in enumerate(zip(states, signals, blocks)):
            if not st.finished:
                pos = st.received
                works.append(Work(st, x[pos:pos + b], pos + b >= len(x)))
        run_step(packed, works, runner)
        steps += 1
        for w in works:
            outs[states.index(w.state)].append(w.out)
    for x, o, b in zip(signals, outs, blocks):
        assert np.abs(np.concatenate(o) - stream_through(packed, x, [b])).max() < SEAM_TOLERANCE
    assert runner.padded_eager > steps  # more than one bucket per step while lengths differ
    assert {shape[1] for shape in runner.shapes} == set(runner.samples)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_depthwise_as_grouped_convolution_equals_taps(full_model, precision):
    dtype = getattr(torch, precision)
    taps = PackedWeights(full_model, "cpu", dtype)
    conv = PackedWeights(full_model, "cpu", dtype, depthwise="conv")
    x = speechlike(0.3, seed=4)
    whole = stream_through(conv, x, [len(x)])
    assert np.abs(whole - stream_through(taps, x, [len(x)])).max() < SEAM_TOLERANCE
    assert np.abs(whole - stream_through(conv, x, [1000, 37])).max() < SEAM_TOLERANCE
    with pytest.raises(ValueError):
        PackedWeights(full_model, "cpu", dtype, depthwise="fft")


def test_batches_beyond_the_largest_bucket_are_split(small_ckpt):
    packed = PackedWeights(load_generator(small_ckpt), "cpu", torch.float32)
    runner = BucketRunner(packed, capture=False, batches=(1, 2), block_ms=(50,))
    signals = [speechlike(0.1, seed=i) for i in range(5)]
    exact = batched_through(packed, signals, 800)
    for e, p in zip(exact, batched_through(packed, signals, 800, runner)):
        assert np.abs(p - e).max() < SEAM_TOLERANCE
    assert runner.padded_eager == 3 * 2  # two steps of 800, each as chunks of 2 + 2 + 1


def test_every_step_fits_the_bucket_bound():
    # random block sizes and endings: positions per stage never exceed frames_bound
    cfg = APBWEConfig()
    rng = np.random.default_rng(5)
    for _ in range(300):
        state = StreamState(cfg)
        steps = int(rng.integers(1, 6))
        for i in range(steps):
            n = int(rng.choice([0, 1, 2, 53, 54, 80, 320, 4000, 16000]) + rng.integers(0, 3))
            final = i == steps - 1
            plan = plan_row(state, n, final)
            assert plan.count <= frames_bound(cfg, plan.lr_count)
            advance(state, plan, np.zeros(n, np.float32), final)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("precision,depthwise", [("float32", "taps"), ("bfloat16", "taps"),
                                                 ("float32", "conv")])
def test_cuda_graphs_equal_eager(full_model, precision, depthwise):
    torch.backends.cuda.matmul.allow_tf32 = False
    packed = PackedWeights(full_model.to("cuda"), "cuda", getattr(torch, precision), depthwise)
    try:
        runner = BucketRunner(packed)
        signals = [speechlike(1.3, seed=i) for i in range(3)] + [speechlike(0.02, seed=9)]
        for block in (320, 16000):
            eager = batched_through(packed, signals, block)
            graphs = batched_through(packed, signals, block, runner)
            tolerance = SEAM_TOLERANCE if precision == "float32" else 1e-2
            for e, g in zip(eager, graphs):
                assert g.shape == e.shape
                assert np.abs(g - e).max() < tolerance
        assert runner.captures > 0 and runner.replays > 0 and runner.padded_eager == 0
    finally:
        full_model.to("cpu")


def test_engine_batches_concurrent_streams_on_its_worker(small_ckpt):
    engine = Engine(load_generator(small_ckpt))
    try:
        signals = [speechlike(0.4, seed=i) for i in range(6)]
        alone = [engine.enhance(x) for x in signals]
        steps_before = engine.steps

        async def one(x):
            state, outs = engine.new_stream(), []
            for pos in range(0, len(x), 800):
                outs.append(await engine.process(state, x[pos:pos + 800], pos + 800 >= len(x)))
            return np.concatenate(outs)

        async def all_of_them():
            return await asyncio.gather(*(one(x) for x in signals))

        together = asyncio.run(all_of_them())
        for a, t in zip(alone, together):
            assert np.abs(a - t).max() < SEAM_TOLERANCE
        assert engine.steps - steps_before < 6 * 8  # steps were shared by streams
    finally:
        engine.close()


# --- the plugin in a pipeline ------------------------------------------------------------------

class Voice16k:
    """A 16 kHz test voice (the tone synthesizer) and its speaker."""

    def __init__(self, delay: float = 0.0):
        self.tone = ToneSynthesizer(seconds_per_chunk=0.3, delay=delay)

    @hookimpl
    def veena_register_synthesizers(self, runtime):
        return [self.tone]

    @hookimpl
    def veena_register_speakers(self, runtime):
        return [Speaker(name="testvoice")]


def make_runtime(apbwe: dict, voice=None):
    cfg = parse_config({"stages": {"synthesizer": "tone"},
                        "defaults": {"speaker": "testvoice", "format": "pcm"},
                        "plugins": {"apbwe": apbwe,
                                    "chunk": {"min_chars": 0, "short_chars": 0}}})
    return build_runtime(cfg, extra=[("voice16k", voice or Voice16k())])


def synthesize(rt, **request):
    async def go():
        await await_all(rt.pm.hook.veena_startup(runtime=rt))
        try:
            pipeline = Pipeline(rt)
            job = pipeline.prepare(GenerateRequest(text="one. two. three.", **request), "rid")
            body = b"".join([b async for b in pipeline.audio(job)])
            await pipeline.drain()
            return job, body
        finally:
            await await_all(rt.pm.hook.veena_shutdown(runtime=rt))
    return asyncio.run(go())


def test_veena_process_audio_applies_super_resolution_at_48k(small_ckpt):
    rt = make_runtime({"checkpoint": str(small_ckpt), "device": "cpu", "min_block_ms": 50})
    job, body = synthesize(rt, sample_rate=48000)
    assert job.extra_headers["X-Super-Resolution"] == "ap-bwe"
    assert job.output.sample_rate == 48000
    assert len(body) // 2 == 3 * 16000 * 0.9  # three chunks of 0.3 s, every sample accounted for
    assert b"sr_used" in rt.telemetry.prometheus()
    assert job.get(Spent).seconds > 0


def test_other_rates_and_voices_are_left_alone(small_ckpt):
    rt = make_runtime({"checkpoint": str(small_ckpt), "device": "cpu"})
    job, body = synthesize(rt, sample_rate=24000)
    assert "X-Super-Resolution" not in job.extra_headers
    assert len(body) // 2 == 24000 * 0.9
    rt = make_runtime({"checkpoint": str(small_ckpt), "enabled": False})
    job, _ = synthesize(rt, sample_rate=48000)
    assert "X-Super-Resolution" not in job.extra_headers


def test_missing_checkpoint_falls_back_to_resampling(tmp_path, caplog):
    rt = make_runtime({"checkpoint": str(tmp_path / "nothing-here")})
    with caplog.at_level(logging.WARNING, logger="veena.apbwe"):
        job, body = synthesize(rt, sample_rate=48000)
    assert job.extra_headers["X-Super-Resolution"] == "resample-fallback"
    assert len(body) // 2 == 48000 * 0.9
    assert any(r.getMessage() == "apbwe.unavailable" for r in caplog.records)
    assert b"sr_fallback" in rt.telemetry.prometheus()


def test_checkpoint_path_comes_from_the_environment(monkeypatch, small_ckpt):
    monkeypatch.delenv("VEENA_APBWE_PATH", raising=False)
    monkeypatch.setenv("AP_BWE_CHECKPOINT_DIR", str(small_ckpt))
    assert Config().checkpoint == str(small_ckpt)
    monkeypatch.setenv("VEENA_APBWE_PATH", "/models/apbwe")
    assert Config().checkpoint == "/models/apbwe"
    with pytest.raises(ConfigError, match="devise"):
        make_runtime({"devise": "cpu"})


def test_cancelled_stream_stops_the_voice(small_ckpt):
    voice = Voice16k(delay=0.01)
    rt = make_runtime({"checkpoint": str(small_ckpt), "device": "cpu"}, voice)

    async def go():
        await await_all(rt.pm.hook.veena_startup(runtime=rt))
        pipeline = Pipeline(rt)
        job = pipeline.prepare(GenerateRequest(text=". ".join(["word"] * 40), sample_rate=48000),
                               "rid")
        gen = pipeline.audio(job)
        await anext(gen)
        await gen.aclose()
        await pipeline.drain()
        await await_all(rt.pm.hook.veena_shutdown(runtime=rt))

    asyncio.run(go())
    assert voice.tone.active == 0
    assert voice.tone.blocks_made < 40 * 5


def test_a_block_at_another_rate_passes_unchanged(small_ckpt):
    engine = Engine(load_generator(small_ckpt))

    async def source():
        yield PCM.from_float(speechlike(0.1), 16000)
        yield PCM.from_float(np.zeros(441, np.float32), 44100)
        yield PCM.from_float(np.zeros(160, np.float32), 16000)

    async def go():
        return [b async for b in super_resolve(source(), engine, Config(min_block_ms=1))]

    try:
        blocks = asyncio.run(go())
    finally:
        engine.close()
    assert sum(len(b.samples) for b in blocks if b.sample_rate == 48000) == 4800
    assert [b.sample_rate for b in blocks][-2:] == [44100, 16000]
