"""Issue 14.4 against a real `veena serve`: SIGTERM with slow readers drains within the grace,
ends every stream properly, records them and exits 0."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time

import httpx

GRACE = 2.0
LONG = "This sentence is one of very many in a long text read aloud slowly. " * 400


class SlowReader(threading.Thread):
    """A streamed POST over a raw socket, read slowly until ``fast_after`` (monotonic), then
    as fast as it comes; records whether the chunked body ended with its terminator."""

    def __init__(self, port: int, request_id: str, fast_after: list[float]) -> None:
        super().__init__(daemon=True)
        self.port, self.request_id, self.fast_after = port, request_id, fast_after
        self.first_bytes = threading.Event()
        self.status: int | None = None
        self.body = 0
        self.terminated = False
        self.error: str | None = None

    def run(self) -> None:
        body = json.dumps({"text": LONG, "stream": True, "format": "wav"}).encode()
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        s.settimeout(30)
        try:
            s.connect(("127.0.0.1", self.port))
            s.sendall(b"POST /v1/tts/generate HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      b"application/json\r\nX-Request-ID: %s\r\nContent-Length: %d\r\n\r\n"
                      % (self.request_id.encode(), len(body)) + body)
            data = b""
            while b"\r\n\r\n" not in data:
                data += s.recv(4096)
            head, data = data.split(b"\r\n\r\n", 1)
            self.status = int(head.split()[1])
            self.first_bytes.set()
            while True:  # chunked transfer: size line, data, CRLF ... "0\r\n\r\n"
                while b"\r\n" not in data:
                    data += self._recv(s)
                line, data = data.split(b"\r\n", 1)
                size = int(line, 16)
                while len(data) < size + 2:
                    data += self._recv(s)
                self.body += size
                data = data[size + 2:]
                if size == 0:
                    self.terminated = True
                    return
        except Exception as exc:  # noqa: BLE001 - the test reports it
            self.error = repr(exc)
        finally:
            self.first_bytes.set()
            s.close()

    def _recv(self, s: socket.socket) -> bytes:
        if not self.fast_after or time.monotonic() < self.fast_after[0]:
            time.sleep(0.05)  # a slow reader: about 80 KB/s
            piece = s.recv(4096)
        else:
            piece = s.recv(1 << 20)
        if not piece:
            raise ConnectionError("closed before the terminator")
        return piece


def test_sigterm_drains_slow_readers_within_the_grace(start_server):
    srv = start_server(f"[server]\nshutdown_grace_s = {GRACE}\n")
    fast_after: list[float] = []
    readers = [SlowReader(srv.port, f"slow-{i}", fast_after) for i in range(4)]
    for r in readers:
        r.start()
    for r in readers:
        assert r.first_bytes.wait(30) and r.status == 200, r.error

    t0 = time.monotonic()
    fast_after.append(t0 + GRACE + 0.5)  # the readers keep up once the grace is over
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    health = httpx.get(srv.url + "/v1/tts/health", timeout=5)
    assert health.status_code == 503 and health.json()["status"] == "draining"
    refused = httpx.post(srv.url + "/v1/tts/generate", json={"text": "New work."}, timeout=5)
    assert refused.status_code == 503 and refused.headers["retry-after"]
    assert refused.json()["error"]["code"] == "draining"

    assert srv.proc.wait(GRACE + 15) == 0
    took = time.monotonic() - t0
    assert GRACE - 0.2 < took < GRACE + 10, took
    for r in readers:
        r.join(10)
        assert r.terminated and r.error is None, (r.request_id, r.error, r.body)
        assert r.body > 44

    async def rows():
        from veena.platform.db.sqlite import SqliteDatabase

        db = SqliteDatabase(srv.data_dir / "veena.db")
        await db.open()
        try:
            return {r.request_id: r for r in await db.sentences(limit=100)}
        finally:
            await db.close()
    stored = asyncio.run(rows())
    for r in readers:
        row = stored[r.request_id]
        assert (row.outcome, row.error_code) == ("failed", "shutdown")
        assert 0 < row.chars_delivered < row.chars_requested
    log = srv.log.read_text()
    assert "tts.shutdown_streams_ended" in log
