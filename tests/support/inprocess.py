"""A real HTTP server on loopback in a thread of the test process, for apps built in the test
(in-process plugins, a runtime the test inspects). Streaming needs a real server: the Litestar
TestClient buffers whole bodies."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import uvicorn

from tests.support.services import free_port


class ThreadServer:
    """Runs ``app`` with uvicorn on its own event loop; ``before`` (a coroutine function) runs
    first on that loop, as Modal runs its enter methods before serving, on the same loop."""

    def __init__(self, app: Any, before: Callable[[], Awaitable[None]] | None = None,
                 wait_ready: bool = True) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.error: BaseException | None = None
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                     log_config=None, lifespan="on"))
        self._before = before
        self._thread = threading.Thread(target=self._run, name="test-server", daemon=True)
        self._thread.start()
        self._wait(ready=wait_ready)

    def _run(self) -> None:
        async def main() -> None:
            if self._before is not None:
                await self._before()
            await self._server.serve()
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported by _wait
            self.error = exc

    def _wait(self, ready: bool, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise RuntimeError("test server failed to start") from self.error
            try:
                status = httpx.get(self.url + "/v1/tts/health", timeout=1).status_code
                if status == 200 or not ready:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError("test server did not become ready")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)
