"""``WS /v1/tts/ws``: text in as it is written (LLM tokens, half words), audio out as soon as a
sentence or clause is complete. Reaches the core only through the ``Pipeline`` (admit,
prepare, audio), so authentication, rate limits, normalization, records and metrics are the
same as HTTP's. Protocol: docs/websocket.md."""

from __future__ import annotations

from litestar import websocket
from litestar.connection import WebSocket

from veena.platform.hookspecs import hookimpl
from veena.platform.runtime import Runtime
from veena.plugins.websocket.config import Config
from veena.plugins.websocket.session import Session

NAME = "websocket"
PATH = "/v1/tts/ws"

__all__ = ["Config", "NAME", "PATH"]


@websocket(PATH)
async def tts_socket(socket: WebSocket) -> None:
    """One streaming session (see docs/websocket.md)."""
    pipeline = socket.app.state.pipeline
    cfg: Config = pipeline.runtime.plugin_config(NAME) or Config()
    await Session(socket, pipeline, cfg).serve()


@hookimpl
def veena_register_routes(runtime: Runtime):
    return [tts_socket]
