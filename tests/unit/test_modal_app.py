"""modal_app.py offline: no network, no credentials, the real ``modal`` package.

The declared GPU, concurrency, autoscaling, volumes, secrets, timeouts and snapshot settings are
checked against the settings, both as modal_app reports them and as Modal's own objects hold
them; the container's start-up (snapshot-safe load, start, warm-up, ready) runs for real with
the embedded voice and with the neural voice on a tiny checkpoint.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
import tomllib
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT
from tests.support.inprocess import ThreadServer
from veena.platform.config import parse_config
from veena.platform.deploy import ModalSettings, modal_settings, service_config
from veena.platform.errors import ConfigError
from veena.platform.hookspecs import hookimpl

modal = pytest.importorskip("modal")


def load_modal_app(monkeypatch, tmp_path: Path, env: dict[str, str] | None = None,
                   config: str | None = None) -> ModuleType:
    """A fresh import of modal_app.py (under its own module name) with this environment."""
    import os

    for key in [k for k in os.environ if k.startswith("VEENA_MODAL_")]:
        monkeypatch.delenv(key)
    monkeypatch.delenv("VEENA_CONFIG", raising=False)
    if config is not None:
        path = tmp_path / "veena.toml"
        path.write_text(config)
        monkeypatch.setenv("VEENA_CONFIG", str(path))
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    name = f"modal_app_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, ROOT / "modal_app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def modal_record(module: ModuleType) -> tuple[Any, dict[str, Any]]:
    """What Modal itself holds for the class: the public ``Function.info()`` (GPU, timeouts,
    concurrency, volumes, secrets) and, for what info() leaves out (autoscaler settings, memory
    snapshot, web endpoint type), the values its function loader captured from ``@app.cls``
    (modal 1.6's ``_Function._from_local``; this test has to follow if Modal moves them)."""
    from modal._utils.async_utils import synchronizer

    fn = module.Veena._get_class_service_function()
    loader = synchronizer._translate_in(fn)._load
    captured = dict(zip(loader.__code__.co_freevars, (c.cell_contents for c in loader.__closure__)))
    return fn.info(), captured


def enter_methods(module: ModuleType) -> dict[str, list[str]]:
    from modal._partial_function import _find_partial_methods_for_user_cls, _PartialFunctionFlags

    user_cls = module.Veena._get_user_cls()
    return {kind: list(_find_partial_methods_for_user_cls(user_cls, flag))
            for kind, flag in (("snap", _PartialFunctionFlags.ENTER_PRE_SNAPSHOT),
                               ("after_snap", _PartialFunctionFlags.ENTER_POST_SNAPSHOT))}


def check_against_modal(module: ModuleType, s: ModalSettings) -> None:
    from modal_proto import api_pb2

    info, captured = modal_record(module)
    expected_gpus = [s.gpu, *s.gpu_fallbacks]
    assert [g for g, _count in info.gpus] == expected_gpus
    assert info.timeout == s.timeout and info.startup_timeout == s.startup_timeout
    assert (info.concurrency_info.max_inputs, info.concurrency_info.target_inputs) == \
        (s.max_inputs, s.target_inputs)
    assert {path: v.name for path, v in info.volumes.items()} == {"/models": s.volume}
    secrets = [f"modal.Secret.from_name({name!r})" for name in s.secrets]
    assert info.secrets[:len(secrets)] == secrets
    auto = captured["autoscaler_settings"]
    assert (auto.min_containers, auto.max_containers, auto.buffer_containers,
            auto.scaledown_window) == (s.min_containers, s.max_containers, s.buffer_containers,
                                       s.scaledown_window)
    assert captured["enable_memory_snapshot"] is s.memory_snapshot
    assert captured["method_definitions"]["web"].webhook_config.type == api_pb2.WEBHOOK_TYPE_ASGI_APP
    assert info.method_names == ["web"]
    assert enter_methods(module) == ({"snap": ["load"], "after_snap": ["start"]} if s.memory_snapshot
                                     else {"snap": [], "after_snap": ["load", "start"]})


def test_defaults_are_declared_to_modal(monkeypatch, tmp_path):
    module = load_modal_app(monkeypatch, tmp_path)
    s = module.SETTINGS
    assert s == ModalSettings()
    assert module.declared_settings() == {
        "app": "veena", "gpu": ["H100", "H200", "A100-80GB"], "volumes": {"/models": "veena-models"},
        "secrets": ["veena-secrets"], "env": {}, "max_inputs": 64, "target_inputs": 48,
        "min_containers": 0, "max_containers": 4, "buffer_containers": 0, "scaledown_window": 300,
        "timeout": 150, "startup_timeout": 600, "enable_memory_snapshot": True,
        "snapshot_enter": True, "request_deadline_s": 145.0,
        "control_plane": {"max_inputs": 256, "paths": ["/v1/voices", "/v1/admin", "/v1/tts/health"],
                          "cpu": 1.0, "memory": 2048, "min_containers": 0, "max_containers": 4,
                          "scaledown_window": 300, "timeout": 150, "startup_timeout": 600,
                          "enable_memory_snapshot": True}}
    check_against_modal(module, s)
    assert module.app.name == "veena"


def test_config_file_and_environment_overrides(monkeypatch, tmp_path):
    config = """
[deploy.modal]
app_name = "veena-staging"
min_containers = 1
max_containers = 8
buffer_containers = 1
scaledown_window = 60
secrets = ["veena-secrets", "veena-otel"]
engine = "vllm"
"""
    env = {"VEENA_MODAL_GPU": "A100-80GB", "VEENA_MODAL_GPU_FALLBACKS": "L40S",
           "VEENA_MODAL_MAX_INPUTS": "16", "VEENA_MODAL_TARGET_INPUTS": "12",
           "VEENA_MODAL_TIMEOUT": "120", "VEENA_MODAL_STARTUP_TIMEOUT": "900",
           "VEENA_MODAL_MEMORY_SNAPSHOT": "false"}
    module = load_modal_app(monkeypatch, tmp_path, env, config)
    s = module.SETTINGS
    assert (s.app_name, s.gpu, s.gpu_fallbacks, s.min_containers, s.max_containers) == \
        ("veena-staging", "A100-80GB", ["L40S"], 1, 8)
    assert (s.max_inputs, s.target_inputs, s.timeout, s.startup_timeout, s.memory_snapshot) == \
        (16, 12, 120, 900, False)
    declared = module.declared_settings()
    assert declared["gpu"] == ["A100-80GB", "L40S"] and declared["request_deadline_s"] == 115.0
    # The container re-imports modal_app: the overrides and the shipped file travel with it.
    assert declared["env"] == {**env, "VEENA_CONFIG": "/opt/veena/veena.toml"}
    check_against_modal(module, s)
    assert module.app.name == "veena-staging"


def test_one_gpu_without_fallbacks_is_a_plain_string(monkeypatch, tmp_path):
    module = load_modal_app(monkeypatch, tmp_path, {"VEENA_MODAL_GPU": "H200",
                                                    "VEENA_MODAL_GPU_FALLBACKS": ""})
    assert module.cls_options(module.SETTINGS)["gpu"] == "H200"
    info, _ = modal_record(module)
    assert info.gpus == [("H200", 1)]


@pytest.mark.parametrize("env, config, message", [
    ({"VEENA_MODAL_TARGET_INPUTS": "100"}, None, "target_inputs <= max_inputs"),
    ({"VEENA_MODAL_GPUS": "H100"}, None, "unknown setting VEENA_MODAL_GPUS"),
    ({"VEENA_MODAL_MAX_CONTAINERS": "lots"}, None, "deploy.modal.max_containers"),
    ({}, "[deploy.modal]\nscaledown_window = 1\n", "scaledown_window"),
    ({}, "[deploy.modal]\ngpu_type = 'H100'\n", "deploy.modal.gpu_type`: unknown key"),
])
def test_bad_settings_name_the_key(monkeypatch, tmp_path, env, config, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_modal_app(monkeypatch, tmp_path, env, config)


def test_service_config_follows_the_settings():
    spark = service_config(parse_config({}), ModalSettings(max_inputs=32, target_inputs=16))
    assert spark.server.host == "0.0.0.0" and spark.stages.synthesizer == "spark"
    assert spark.server.request_deadline_s == 145.0
    assert spark.plugins["spark"] == {"model_path": "/models/veena3", "engine": "torch", "slots": 32}
    assert spark.plugins["apbwe"] == {"checkpoint": "/models/apbwe/16kto48k"}
    vllm = service_config(parse_config({"plugins": {"spark": {"vllm": {"gpu_memory_utilization": 0.8}}},
                                        "server": {"request_deadline_s": 100}}),
                          ModalSettings(engine="vllm"))
    assert vllm.plugins["spark"]["vllm"] == {"max_num_seqs": 64, "gpu_memory_utilization": 0.8}
    assert vllm.server.request_deadline_s == 100
    plain = service_config(parse_config({"disable": ["apbwe"]}), ModalSettings(synthesizer="espeak"))
    assert plain.plugins == {} and plain.stages.synthesizer == "espeak"


def test_settings_from_a_config_without_environment():
    s = modal_settings(parse_config({"deploy": {"modal": {"gpu": "L40S", "gpu_fallbacks": []}}}), {})
    assert s.gpus() == "L40S" and s.request_deadline_s() == 145.0


def test_image_ships_the_project_and_its_gpu_extras(monkeypatch, tmp_path):
    module = load_modal_app(monkeypatch, tmp_path)
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(module.SETTINGS.extras) <= set(optional) and {"neural", "vllm"} <= set(module.SETTINGS.extras)
    keep = ["pyproject.toml", "setup.py", "README.md", "platform/app.py", "codecs/wav.py",
            "plugins/spark/synthesizer.py", "speakers/voices/kavya.toml"]
    drop = ["tests/conftest.py", ".venv/lib/x.py", ".git/HEAD", "docs/hooks.md",
            "platform/__pycache__/app.cpython-312.pyc", "modal_app.py"]
    assert not any(module._not_source(Path(p)) for p in keep)
    assert all(module._not_source(Path(p)) for p in drop)


def test_drain_action_calls_modal_stop_fetching_inputs(monkeypatch, tmp_path, caplog):
    ModalDrain = load_modal_app(monkeypatch, tmp_path).ModalDrain

    caplog.set_level(logging.INFO, logger="veena.modal")
    asyncio.run(ModalDrain().veena_drain(reason="cuda_oom", runtime=None))
    # Outside a container Modal refuses; the call itself is the real one.
    (record,) = [r for r in caplog.records if r.getMessage() == "modal.stop_fetching_inputs_failed"]
    assert record.reason == "cuda_oom" and "Modal container" in record.error


class Probe:
    def __init__(self) -> None:
        self.records = []

    @hookimpl
    def veena_request_finished(self, record, runtime):
        self.records.append(record)


OPEN = "[server]\nallow_open_access = true\n"


def _container(monkeypatch, tmp_path, settings: ModalSettings, config: str = OPEN):
    Container = load_modal_app(monkeypatch, tmp_path).Container
    monkeypatch.setenv("VEENA_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "veena.toml").write_text(config)
    monkeypatch.setenv("VEENA_CONFIG", str(tmp_path / "veena.toml"))
    probe = Probe()
    container = Container(settings, plugins=[("probe", probe)])
    container.load()
    return container, probe


def test_container_warms_up_before_it_is_ready(monkeypatch, tmp_path):
    container, probe = _container(monkeypatch, tmp_path, ModalSettings(synthesizer="espeak"))
    runtime = container.app.state.runtime
    assert runtime.phase.value == "starting" and not runtime.started  # load() started nothing
    assert runtime.pm.get_plugin("modal") is not None
    srv = ThreadServer(container.app, before=container.start)  # enter, then serve, one loop
    try:
        health = httpx.get(srv.url + "/v1/tts/health", timeout=5)
        assert health.status_code == 200 and runtime.phase.value == "ready"
        assert probe.records == []  # the warm-up synthesis is not recorded
        resp = httpx.post(srv.url + "/v1/tts/generate", json={"text": "Hello.", "stream": False},
                          timeout=30)
        assert resp.status_code == 200
    finally:
        srv.stop()
    assert [r.outcome for r in probe.records] == ["completed"]


def test_container_without_keys_or_open_access_refuses_to_start(monkeypatch, tmp_path):
    container, _ = _container(monkeypatch, tmp_path, ModalSettings(synthesizer="espeak"), config="")
    with pytest.raises(ConfigError, match="refusing to serve without authentication"):
        asyncio.run(container.start())
    assert container.app.state.runtime.phase.value == "starting"


def test_container_with_the_neural_voice(monkeypatch, tmp_path, tmp_path_factory):
    pytest.importorskip("torch")
    from tests.support.spark_checkpoint import tiny_checkpoint

    import torch

    settings = ModalSettings(model_path=str(tiny_checkpoint(tmp_path_factory)), engine="torch",
                             max_inputs=2, target_inputs=1)
    asked = []
    with monkeypatch.context() as m:  # the snapshot phase has no GPU: nothing may ask for one
        m.setattr(torch.cuda, "is_available", lambda: asked.append("is_available") or False)
        m.setattr(torch.cuda, "device_count", lambda: asked.append("device_count") or 0)
        container, probe = _container(monkeypatch, tmp_path, settings,
                                      OPEN + "[plugins.spark]\nthreads = 1\n")
    assert asked == [] and not torch.cuda.is_initialized()
    runtime = container.app.state.runtime
    synth = runtime.synthesizers.get("spark")
    assert synth.engine is None  # nothing loaded before the snapshot
    srv = ThreadServer(container.app, before=container.start)
    try:
        assert synth.engine is not None and synth.config.slots == 2
        health = httpx.get(srv.url + "/v1/tts/health", timeout=5).json()
        assert health["status"] == "ok" and health["synthesizer"] == "spark"
    finally:
        srv.stop()
    assert probe.records == []


# --- the control plane -------------------------------------------------------------------------

def image_commands(image) -> list[str]:
    """Every Dockerfile command of a Modal image and its bases, as Modal would build them
    (read from the image's loader offline; modal 1.6 keeps them in its closure)."""
    from modal._utils.async_utils import synchronizer

    def walk(img) -> list[str]:
        loader = synchronizer._translate_in(img)._load
        cells = dict(zip(loader.__code__.co_freevars, (c.cell_contents for c in loader.__closure__)))
        base = [cmd for parent in cells["base_images"].values() for cmd in walk(parent)]
        own = cells["dockerfile_function"]("2025.06").commands if cells["dockerfile_function"] else []
        return base + own
    return walk(image)


def test_control_plane_is_declared_to_modal_without_a_gpu(monkeypatch, tmp_path):
    module = load_modal_app(monkeypatch, tmp_path)
    s = module.SETTINGS
    fn = module.ControlPlane._get_class_service_function()
    info = fn.info()
    from modal._utils.async_utils import synchronizer
    from modal_proto import api_pb2

    loader = synchronizer._translate_in(fn)._load
    captured = dict(zip(loader.__code__.co_freevars, (c.cell_contents for c in loader.__closure__)))
    assert info.gpus == [] and info.cpu == s.control_cpu == 1.0
    assert info.memory_mib == s.control_memory == 2048
    assert info.concurrency_info.max_inputs == s.control_max_inputs == 256
    assert {path: v.name for path, v in info.volumes.items()} == {"/models": s.volume}
    assert info.secrets[:1] == ["modal.Secret.from_name('veena-secrets')"]
    assert info.timeout == s.timeout and info.method_names == ["web"]
    auto = captured["autoscaler_settings"]
    assert (auto.min_containers, auto.max_containers) == (0, 4)
    assert captured["method_definitions"]["web"].webhook_config.type == api_pb2.WEBHOOK_TYPE_ASGI_APP
    assert module.declared_settings()["control_plane"]["paths"] == \
        ["/v1/voices", "/v1/admin", "/v1/tts/health"]
    # A small image: CPU-only torch for the speaker encoder, no CUDA build, vLLM or transformers.
    control = " ".join(image_commands(captured["image"]))
    gpu = " ".join(image_commands(modal_record(module)[1]["image"]))
    assert "download.pytorch.org/whl/cpu" in control and "torch" in control
    assert "safetensors" in control and "pyyaml" in control
    assert not any(name in control for name in ("vllm", "transformers", "nvidia"))
    assert "vllm" in gpu and "transformers" in gpu


def test_control_plane_can_be_left_out(monkeypatch, tmp_path):
    module = load_modal_app(monkeypatch, tmp_path, {"VEENA_MODAL_CONTROL_PLANE": "false"})
    assert not hasattr(module, "ControlPlane") and module.declared_settings()["control_plane"] is None
    with pytest.raises(ConfigError, match="control_max_containers"):
        load_modal_app(monkeypatch, tmp_path, {"VEENA_MODAL_CONTROL_MAX_CONTAINERS": "0"})


def _clip(seconds: float = 3.0, rate: int = 16000) -> bytes:
    import io
    import math
    import struct
    import wave

    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes(struct.pack(f"<{int(seconds * rate)}h", *(
            int(12000 * math.sin(2 * math.pi * (180 + 40 * math.sin(i / 2000)) * i / rate)
                * (0.6 + 0.4 * math.sin(i / 700))) for i in range(int(seconds * rate)))))
    return out.getvalue()


def test_control_plane_serves_voices_admin_health_and_no_synthesis(monkeypatch, tmp_path,
                                                                   tmp_path_factory):
    """The CPU container clones a voice (speaker encoder on CPU, without transformers or the
    LLM), answers the voice, admin and health routes and none of synthesis; the GPU class's
    container on the same store speaks with the voice."""
    pytest.importorskip("torch")
    import torch

    from tests.support.spark_checkpoint import tiny_checkpoint

    settings = ModalSettings(model_path=str(tiny_checkpoint(tmp_path_factory)), engine="torch",
                             max_inputs=2, target_inputs=1)
    Container = load_modal_app(monkeypatch, tmp_path).Container
    monkeypatch.setenv("VEENA_DATA_DIR", str(tmp_path / "data"))  # one SQLite store for both
    (tmp_path / "veena.toml").write_text(OPEN + "[plugins.spark]\nthreads = 1\n")
    monkeypatch.setenv("VEENA_CONFIG", str(tmp_path / "veena.toml"))
    with monkeypatch.context() as m:
        for name in ("transformers", "vllm"):  # the control plane's image has neither
            m.setitem(sys.modules, name, None)
        control = Container(settings, control_plane=True)
        control.load()
        runtime = control.app.state.runtime
        served = {r.path for r in control.app.routes if not r.path.startswith("/schema")}
        assert served and all(control_path(p) for p in served), sorted(served)  # no WebSocket
        assert "apbwe" in runtime.config.disable and runtime.config.stages.synthesizer == "espeak"
        srv = ThreadServer(control.app, before=control.start)
        try:
            assert httpx.get(srv.url + "/v1/tts/health", timeout=5).json()["status"] == "ok"
            resp = httpx.post(srv.url + "/v1/voices", data={"name": "Plane", "consent": "true"},
                              files={"file": ("clip.wav", _clip())}, timeout=120)
            assert resp.status_code == 201, resp.text
            vid = resp.json()["id"]
            assert vid in {v["id"] for v in httpx.get(srv.url + "/v1/voices", timeout=5).json()}
            assert httpx.get(srv.url + "/v1/admin/keys", timeout=5).status_code == 401
            for method, path in (("POST", "/v1/tts/generate"), ("POST", "/v1/audio/speech"),
                                 ("POST", f"/v1/text-to-speech/{vid}"), ("GET", "/v1/models"),
                                 ("GET", "/v1/formats")):
                resp = httpx.request(method, srv.url + path, json={"text": "Hi.", "input": "Hi."},
                                     timeout=5)
                assert resp.status_code in (404, 405) and resp.json()["error"]["code"] in (
                    "not_found", "method_not_allowed"), path
            schema = httpx.get(srv.url + "/schema/openapi.json", timeout=5).json()["paths"]
            assert schema and all(control_path(p) for p in schema), sorted(schema)
            assert {"/v1/voices", "/v1/admin/keys", "/v1/tts/health"} <= set(schema)
        finally:
            srv.stop()
        assert runtime.synthesizers.get("spark").engine is None  # the LLM never loaded
        assert not torch.cuda.is_initialized()

    data = Container(settings)  # the GPU class's container, here on CPU
    data.load()
    srv = ThreadServer(data.app, before=data.start)
    try:
        resp = httpx.post(srv.url + "/v1/tts/generate", json={
            "text": "Hello.", "speaker": vid, "stream": False, "max_tokens": 20, "seed": 1},
            timeout=120)
        assert resp.status_code == 200 and resp.headers["x-voice"] == vid, resp.text
    finally:
        srv.stop()


def control_path(path: str) -> bool:
    return path.startswith(("/v1/voices", "/v1/admin", "/v1/tts/health"))
