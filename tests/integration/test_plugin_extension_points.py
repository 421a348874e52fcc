"""Routes and commands from a third-party wheel, served by ``veena serve`` and run by ``veena``;
path clashes and hook tracing."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys

import httpx
import pytest
import websockets
from litestar import get, websocket
from litestar.connection import WebSocket

from veena.platform.app import create_app
from veena.platform.config import VeenaConfig
from veena.platform.errors import ConfigError
from veena.platform.hookspecs import hookimpl
from veena.platform.plugins import build_plugin_manager
from tests.support.thirdparty import CONTRACTS, build_site


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return build_site(tmp_path_factory.mktemp("thirdparty"))


def _env(site) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)}


def test_wheel_routes_serve_http_and_websocket(site, start_server):
    srv = start_server(None, env=_env(site))
    resp = httpx.get(srv.url + "/v1/percent/50", timeout=10)
    assert resp.status_code == 200 and resp.json() == {"spoken": "50 per cent"}

    async def talk() -> list[str]:
        async with websockets.connect(srv.url.replace("http", "ws") + "/v1/percent/ws") as ws:
            answers = []
            for text in ("10%", "a % b"):
                await ws.send(text)
                answers.append(await asyncio.wait_for(ws.recv(), 10))
            return answers

    assert asyncio.run(talk()) == ["10 per cent", "a  per cent b"]


def test_wheel_command_runs_with_its_exit_code(site, tmp_path):
    env = {**os.environ, **_env(site)}
    cmd = [sys.executable, "-m", "veena.platform.cli", "percent"]
    out = subprocess.run([*cmd, "99%"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "99 per cent", out.stderr
    assert subprocess.run([*cmd, "exit7"], capture_output=True, env=env, timeout=60).returncode == 7
    helptext = subprocess.run([sys.executable, "-m", "veena.platform.cli", "--help"],
                              capture_output=True, text=True, env=env, timeout=60).stdout
    assert "percent" in helptext
    # without the wheel the command does not exist
    bare = subprocess.run([*cmd, "1%"], capture_output=True, text=True, timeout=60)
    assert bare.returncode == 2 and "invalid choice" in bare.stderr


class _Claims:
    """An in-process plugin serving one path."""

    def __init__(self, handler) -> None:
        self.handler = handler

    @hookimpl
    def veena_register_routes(self, runtime):
        return [self.handler]


def test_a_path_claimed_twice_names_both_plugins():
    @get("/v1/twice")
    async def one() -> str:
        return "one"

    @get("/v1/twice")
    async def two() -> str:
        return "two"

    with pytest.raises(ConfigError, match=r"GET /v1/twice of plugin 'second'.*'first'"):
        create_app(VeenaConfig(), plugins=[("first", _Claims(one)), ("second", _Claims(two))])
    with pytest.raises(ConfigError, match=r"/v1/tts/health of plugin 'shadow'.*core routes"):
        @get("/v1/tts/health")
        async def shadow() -> str:
            return "x"
        create_app(VeenaConfig(), plugins=[("shadow", _Claims(shadow))])


def test_same_path_other_method_or_websocket_is_no_clash():
    @websocket("/v1/voices")
    async def sock(socket: WebSocket) -> None:
        await socket.accept()

    app = create_app(VeenaConfig(), plugins=[("sock", _Claims(sock))])
    assert {r.path for r in app.routes} >= {"/v1/voices", "/v1/tts/generate"}


def test_trace_hooks_logs_each_call_with_plugins_and_time(monkeypatch, caplog):
    monkeypatch.setenv("VEENA_TRACE_HOOKS", "1")
    pm, _ = build_plugin_manager(VeenaConfig())
    with caplog.at_level(logging.INFO, logger="veena.hooks"):
        pm.hook.veena_register_codecs(runtime=None)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "veena.hooks"]
    assert line.startswith("hook veena_register_codecs -> [") and "codecs" in line
    assert line.endswith(" ms")
    monkeypatch.delenv("VEENA_TRACE_HOOKS")
    pm, _ = build_plugin_manager(VeenaConfig())
    caplog.clear()
    pm.hook.veena_register_codecs(runtime=None)
    assert not [r for r in caplog.records if r.name == "veena.hooks"]


class _SayToo:
    @hookimpl
    def veena_register_commands(self, subparsers):
        subparsers.add_parser("say", help="a second say")


class _Hello:
    @hookimpl
    def veena_register_commands(self, subparsers):
        p = subparsers.add_parser("hello", help="Says hello.")
        p.set_defaults(func=lambda args: 0 if args.config == "x.toml" else 1)


def test_plugin_commands_get_config_and_cannot_take_a_core_name():
    from veena.platform.cli import build_parser

    args = build_parser([("hello", _Hello())]).parse_args(["hello", "--config", "x.toml"])
    assert args.func(args) == 0
    with pytest.raises(ConfigError, match="say"):
        build_parser([("saytoo", _SayToo())])


def test_built_in_plugins_bring_their_own_commands(tmp_path):
    cli = [sys.executable, "-m", "veena.platform.cli"]
    out = subprocess.run([*cli, "checkpoint", "random", str(tmp_path / "ck")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "ck" / "LLM").is_dir() and (tmp_path / "ck" / "BiCodec").is_dir()
    out = subprocess.run([*cli, "apbwe", "random", str(tmp_path / "bwe"), "--channels", "16",
                          "--layers", "1"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    cfg = tmp_path / "veena.toml"
    cfg.write_text('disable = ["apbwe"]\n')
    gone = subprocess.run([*cli, "apbwe", "random", str(tmp_path / "x")], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "VEENA_CONFIG": str(cfg)})
    assert gone.returncode == 2 and "invalid choice: 'apbwe'" in gone.stderr


def test_wheel_codec_and_voice_pass_the_contract_suites(site, tmp_path):
    (tmp_path / "test_percent_contracts.py").write_text(CONTRACTS)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(tmp_path / "test_percent_contracts.py")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, **_env(site)})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "10 passed, 1 skipped" in out.stdout  # the bitrate test: s8 takes none
