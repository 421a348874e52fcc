"""Every hook's calling pattern, through the real plugin manager and pipeline, in-process."""

import asyncio

import pytest

from tests.support.tone import ToneSynthesizer
from veena.platform.audio import PCM
from veena.platform.awaitables import await_all
from veena.platform.config import parse_config
from veena.platform.errors import ConfigError, VeenaError
from veena.platform.hookspecs import hookimpl
from veena.platform.job import Principal
from veena.platform.pipeline import Pipeline
from veena.platform.plugins import build_runtime
from veena.platform.schemas import GenerateRequest
from veena.speakers import Speaker


class Recorder:
    """A third-party-style plugin implementing every per-request hook."""

    def __init__(self):
        self.calls: list[str] = []
        self.records = []
        self.tone = ToneSynthesizer()

    @hookimpl
    def veena_register_synthesizers(self, runtime):
        return [self.tone]

    @hookimpl
    def veena_register_speakers(self, runtime):
        return [Speaker(name="testvoice", aliases=("tv",))]

    @hookimpl
    def veena_register_normalizers(self, runtime):
        class Upper:
            name = "upper"

            def normalize(self, text, job):
                return text.upper()
        return [Upper()]

    @hookimpl
    def veena_register_codecs(self, runtime):
        return []

    @hookimpl
    async def veena_startup(self, runtime):
        self.calls.append("startup")

    @hookimpl
    def veena_shutdown(self, runtime):
        self.calls.append("shutdown")

    @hookimpl
    async def veena_authenticate(self, request, runtime):
        self.calls.append("auth")
        if request.headers.get("authorization") == "Bearer bad":
            raise VeenaError("invalid_api_key", "bad key", 401)
        return Principal(key_id="k1")

    @hookimpl(wrapper=True)
    def veena_normalize_text(self, text, job, runtime):
        result = yield
        return result + "!"

    @hookimpl(tryfirst=True)
    def veena_chunk_text(self, text, job, runtime):
        self.calls.append("chunk")
        return None  # abstain: the core chunker decides

    @hookimpl(wrapper=True)
    def veena_process_audio(self, stream, job, runtime):
        inner = yield

        async def halve():
            async for block in inner:
                yield PCM((block.samples // 2).astype("int16"), block.sample_rate)
        return halve()

    @hookimpl
    def veena_request_finished(self, record, runtime):
        self.records.append(record)

    @hookimpl(wrapper=True)
    def veena_synthesize(self, job, runtime):
        self.calls.append("synthesize")
        return (yield)

    @hookimpl(wrapper=True)
    def veena_encode(self, stream, job, runtime):
        self.calls.append("encode")
        return (yield)


CONFIG = parse_config({"stages": {"synthesizer": "tone", "normalizers": ["unicode", "upper"]},
                       "defaults": {"speaker": "testvoice", "format": "pcm"},
                       # every sentence its own chunk, however short (the chunks are counted)
                       "plugins": {"chunk": {"min_chars": 0, "short_chars": 0}}})


def run(coro):
    return asyncio.run(coro)


async def _collect(pipeline, job):
    return b"".join([b async for b in pipeline.audio(job)])


def test_every_stage_runs_once_in_order():
    rec = Recorder()
    rt = build_runtime(CONFIG, extra=[("recorder", rec)])
    pipeline = Pipeline(rt)
    from veena.platform.runtime import RequestInfo

    async def go():
        await await_all(rt.pm.hook.veena_startup(runtime=rt))
        principal = await pipeline.admit(RequestInfo("POST", "/", {}, "127.0.0.1"))
        job = pipeline.prepare(GenerateRequest(text="one  two. three"), "rid", principal)
        body = await _collect(pipeline, job)
        await pipeline.drain()
        await await_all(rt.pm.hook.veena_shutdown(runtime=rt))
        return job, body
    job, body = run(go())
    assert job.normalized_text == "ONE TWO. THREE!"
    assert job.chunks == ["ONE TWO.", "THREE!"]
    assert rec.calls == ["startup", "auth", "chunk", "synthesize", "encode", "shutdown"]
    samples = len(body) // 2
    assert samples == 2 * 4000  # two chunks of 0.25 s at 16 kHz, pcm keeps the native rate
    peak = max(abs(int.from_bytes(body[i:i + 2], "little", signed=True)) for i in range(0, 2000, 2))
    assert 4500 < peak < 5000  # 0.3 full scale halved by the process_audio wrapper
    (record,) = rec.records
    assert record.outcome == "completed" and record.key_id == "k1"
    assert record.chars_delivered == len("ONE TWO.") + len("THREE!")
    assert record.original_text == "one  two. three"


def test_authenticate_can_reject():
    rt = build_runtime(CONFIG, extra=[("recorder", Recorder())])
    from veena.platform.runtime import RequestInfo
    with pytest.raises(VeenaError) as info:
        run(Pipeline(rt).admit(RequestInfo("POST", "/", {"authorization": "Bearer bad"}, None)))
    assert info.value.status == 401


def test_cancellation_closes_every_stage_and_records_it():
    rec = Recorder()
    rec.tone.delay = 0.01
    rt = build_runtime(CONFIG, extra=[("recorder", rec)])
    pipeline = Pipeline(rt)

    async def go():
        job = pipeline.prepare(GenerateRequest(text=". ".join(["word"] * 50)), "rid")
        gen = pipeline.audio(job)
        task = asyncio.create_task(anext(gen))
        await task
        consumer = asyncio.create_task(_collect_rest(gen))
        await asyncio.sleep(0.05)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await pipeline.drain()
        return job

    async def _collect_rest(gen):
        async for _ in gen:
            pass

    job = run(go())
    assert rec.tone.active == 0
    assert rec.tone.blocks_made < 50 * 5  # stopped long before the end
    assert pipeline.active_streams == 0
    (record,) = rec.records
    assert record.outcome == "cancelled"
    assert 0 < record.chars_delivered < sum(len(c) for c in job.chunks)


def test_duplicate_synthesizer_name_is_a_config_error():
    class Twin:
        @hookimpl
        def veena_register_synthesizers(self, runtime):
            return [ToneSynthesizer()]
    with pytest.raises(ConfigError, match="already registered"):
        build_runtime(CONFIG, extra=[("recorder", Recorder()), ("twin", Twin())])


def test_disabled_plugin_is_not_loaded():
    cfg = parse_config({"disable": ["espeak"], "stages": {"synthesizer": "tone"},
                        "defaults": {"speaker": "testvoice"}})
    rt = build_runtime(cfg, extra=[("recorder", Recorder())])
    assert "espeak" not in rt.synthesizers
    assert rt.pm.is_blocked("espeak")


def test_await_all_closes_the_coroutines_after_a_failure():
    ran = []

    async def ok():
        ran.append("ok")

    async def boom():
        raise ValueError("start-up failed")

    async def later():
        ran.append("later")

    results = [ok(), boom(), later(), 7]
    with pytest.raises(ValueError):
        asyncio.run(await_all(results))
    assert ran == ["ok"]
    assert results[2].cr_frame is None  # closed unrun: no "never awaited" warning at exit
    assert asyncio.run(await_all([ok(), 3])) == [None, 3]


class Flags:
    """A third-party-style plugin with its own flag on the service commands."""

    @hookimpl
    def veena_serve_options(self, parser):
        parser.add_argument("--greeting", help="what the flags plugin says")

    @hookimpl
    def veena_apply_options(self, args, config):
        if getattr(args, "greeting", None):
            config.plugins.setdefault("flags", {})["greeting"] = args.greeting


def test_serve_options_reach_serve_and_say_and_are_applied_by_their_plugin(monkeypatch):
    from veena.platform.cli import build_parser, config_from_args

    monkeypatch.delenv("VEENA_CONFIG", raising=False)
    parser = build_parser([("flags", Flags())])
    args = parser.parse_args(["say", "hi", "--greeting", "namaste", "--model", "/ck"])
    config = config_from_args(args)
    assert config.plugins["flags"] == {"greeting": "namaste"}
    assert config.plugins["spark"] == {"model_path": "/ck"}  # the spark plugin's own --model
    serve = parser.parse_args(["serve", "--greeting", "hello"])
    assert config_from_args(serve).plugins == {"flags": {"greeting": "hello"}}
    with pytest.raises(SystemExit):
        parser.parse_args(["voices", "--greeting", "x"])  # not a service command


def test_apply_options_writes_nothing_for_unset_flags(monkeypatch):
    from veena.platform.cli import build_parser, config_from_args

    monkeypatch.delenv("VEENA_CONFIG", raising=False)
    args = build_parser([("flags", Flags())]).parse_args(["serve"])
    assert config_from_args(args).plugins == {}


def test_deploy_overrides_come_from_each_plugin():
    from veena.platform.deploy import ModalSettings, service_config

    cfg = service_config(parse_config({}), ModalSettings(engine="vllm", max_inputs=8,
                                                             target_inputs=8))
    assert cfg.plugins["spark"] == {"model_path": "/models/veena3", "engine": "vllm",
                                    "vllm": {"max_num_seqs": 8}}
    assert cfg.plugins["apbwe"] == {"checkpoint": "/models/apbwe/16kto48k"}
    # a disabled plugin is not loaded, so veena_deploy_overrides never reaches it
    plain = service_config(parse_config({"disable": ["apbwe", "spark"]}),
                           ModalSettings(synthesizer="espeak"))
    assert plain.plugins == {}
