"""Throwaway PostgreSQL and Redis servers for tests, started and stopped by the fixtures.

The binaries must be installed (``.ci/run`` installs Redis; PostgreSQL's are looked up under
``/usr/lib/postgresql/*/bin`` and on ``PATH``). When one is missing the tests FAIL with the
command that installs it: a skipped database test would hide exactly what it exists to catch.
As root, PostgreSQL's tools run as the ``postgres`` user (``initdb`` refuses root).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path


def stop_process(proc: subprocess.Popen) -> None:
    """Terminates ``proc`` (killing it after 10 s) if it is still running."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceMissing(RuntimeError):
    pass


def _pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise ServiceMissing("PostgreSQL server binaries (initdb, pg_ctl) not found: install them "
                         "with `apt-get install -y postgresql` (see .ci/run)")


class Postgres:
    """A private PostgreSQL cluster on 127.0.0.1 (fsync off: it is thrown away)."""

    def __init__(self) -> None:
        self.bindir = _pg_bindir()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="veena-pg-"))
        self.data = self.dir / "data"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            if shutil.which("runuser") is None:
                raise ServiceMissing("running as root needs `runuser` to start PostgreSQL as "
                                     "the postgres user")
            try:
                shutil.chown(self.dir, user="postgres")
            except LookupError as exc:
                raise ServiceMissing("running as root needs a `postgres` user (created by the "
                                     "postgresql package)") from exc
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "veena", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        self.start()

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / tool), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{tool} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
        return proc

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"),
                  "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop",
                  check=False)

    @property
    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://veena@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run("psql", "-X", "-q", "-t", "-A", "-h", "127.0.0.1", "-p", str(self.port),
                         "-U", "veena", "-d", database, "-v", "ON_ERROR_STOP=1", "-c", sql).stdout

    def new_database(self) -> str:
        """A fresh, empty database; returns its DSN."""
        name = "t_" + uuid.uuid4().hex[:12]
        self.psql(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """A private redis-server on 127.0.0.1 without persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceMissing("redis-server not found: install it with "
                                 "`apt-get install -y redis-server` (see .ci/run)")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        """Starts (again, empty: nothing is persisted) on the same port."""
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.command("PING") == "+PONG":
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            time.sleep(0.05)
        raise TimeoutError("redis-server did not answer")

    def command(self, *parts: str) -> str | None:
        """One inline command; the first line of the reply (None when unreachable)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall((" ".join(parts) + "\r\n").encode())
                return s.recv(65536).split(b"\r\n")[0].decode()
        except OSError:
            return None

    def stop(self) -> None:
        stop_process(self.proc)
