"""Shared fixtures: a real Veena server on loopback, started as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import settings

from tests.support.services import free_port, stop_process

# CI explores a fixed set of examples, so a submission's result does not depend on luck;
# local runs keep searching randomly for new counterexamples.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

pytest_plugins = ["tests.support.spark_checkpoint"]
"""Fixtures ``ckpt``, ``tokenizer`` and ``tokens`` (a tiny random Veena3 checkpoint)."""

ROOT = Path(__file__).resolve().parent.parent

# Tests never touch the developer's own data or services: no DATABASE_URL / REDIS_URL / Supabase
# from the shell (the fixtures start throwaway servers), and the embedded SQLite store and spool
# files go to a temporary folder (a real key in ~/.local/share/veena would switch auth on).
# Supabase credentials are kept aside for the live contract test only.
LIVE_SUPABASE = {k: os.environ.pop(k) for k in ("SUPABASE_URL", "SUPABASE_SERVICE_KEY")
                 if k in os.environ}
for _var in ("DATABASE_URL", "REDIS_URL"):
    os.environ.pop(_var, None)
os.environ["VEENA_DATA_DIR"] = tempfile.mkdtemp(prefix="veena-test-data-")


class Server:
    """A ``veena serve`` process on 127.0.0.1; stopped with ``stop()``."""

    def __init__(self, config_text: str | None = None, tmp: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "veena.platform.cli", "serve", "--port", str(self.port)]
        # Keys, sentences and spools of a test server live in its own folder, never in the
        # user's data directory (where a real key would switch authentication on).
        data = (tmp or Path(tempfile.mkdtemp(prefix="veena-data-"))) / f"data-{self.port}"
        full_env = {**os.environ, "VEENA_DATA_DIR": str(data), **(env or {}),
                    "PYTHONUNBUFFERED": "1"}
        self.data_dir = Path(full_env["VEENA_DATA_DIR"])
        if config_text is not None:
            assert tmp is not None
            cfg = tmp / f"veena-{self.port}.toml"
            cfg.write_text(config_text)
            cmd += ["--config", str(cfg)]
        self.log = (tmp or Path("/tmp")) / f"server-{self.port}.log"
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=full_env,
                                     cwd=tmp or ROOT)
        self._wait()

    def _wait(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/v1/tts/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(f"server did not start: {self.log.read_text()}")

    def health(self) -> dict:
        return httpx.get(self.url + "/v1/tts/health", timeout=5).json()

    def _lines(self, name: str, request_id: str | None) -> list[dict]:
        out = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                rec = json.loads(line)
                if rec.get("event") == name and request_id in (None, rec.get("request_id")):
                    out.append(rec)
        return out

    def wait_event(self, name: str, request_id: str | None = None,
                   timeout: float = 15.0) -> list[dict]:
        """The log's ``name`` events (of ``request_id``), once there is one: a writer thread
        writes log lines a moment after they happen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self._lines(name, request_id)
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {name} for {request_id} in {self.log}")

    def events(self, name: str, request_id: str | None = None) -> list[dict]:
        """The log's ``name`` events; with ``request_id``, after that request's last line
        (``tts.stream_completed``) is written, so none of its lines is still on the way."""
        if request_id is not None:
            try:
                self.wait_event("tts.stream_completed", request_id)
            except AssertionError:
                pass  # a request that never streamed: the caller's checks decide
        return self._lines(name, request_id)

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The service with no configuration at all: the embedded voice on loopback."""
    srv = Server(tmp=tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture
def start_server(tmp_path: Path):
    """Starts servers with a given TOML config; all are stopped after the test."""
    servers: list[Server] = []

    def start(config_text: str | None = None, env: dict[str, str] | None = None) -> Server:
        srv = Server(config_text, tmp_path, env)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


# --- real databases -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL cluster for the session (fails, never skips, when PostgreSQL is missing)."""
    from tests.support.services import Postgres, ServiceMissing

    try:
        pg = Postgres()
    except ServiceMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    yield pg
    pg.destroy()


@pytest.fixture
def pg_dsn(postgres) -> str:
    """A fresh, empty database in the session's cluster."""
    if not postgres.running:
        postgres.start()
    return postgres.new_database()


@pytest.fixture(scope="session")
def redis_server():
    """A redis-server for the session (fails, never skips, when Redis is missing)."""
    from tests.support.services import Redis, ServiceMissing

    try:
        server = Redis()
    except ServiceMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server) -> str:
    """The session's Redis, emptied for this test."""
    redis_server.command("FLUSHALL")
    return redis_server.url


@pytest.fixture(params=["sqlite", "postgres"])
def store_env(request, tmp_path):
    """The environment of a `veena` subprocess whose store is SQLite, then PostgreSQL."""
    e = {k: v for k, v in os.environ.items()
         if k not in ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_KEY", "VEENA_CONFIG")}
    e["VEENA_DATA_DIR"] = str(tmp_path / "data")
    if request.param == "postgres":
        e["DATABASE_URL"] = request.getfixturevalue("pg_dsn")
    return e
