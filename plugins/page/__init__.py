"""The try-it page: ``GET /`` and its assets under ``/page/*``, served through the route hook.

The page is static (HTML, CSS, JavaScript in ``static/``, no external CDN, font or script, so
it works offline). It calls the public API from the browser: ``/v1/voices``, ``/v1/formats``
and ``/v1/tts/generate``, and plays the stream while it downloads (MediaSource for mp3; Web
Audio for pcm, wav, G.711 and, decoded with WebCodecs, Ogg Opus), and speaks text as it is typed over ``WS /v1/tts/ws`` where the
server has it. An API key typed into it stays in the browser's sessionStorage and
goes out only as ``Authorization: Bearer`` (on the WebSocket, to which a browser cannot add
headers, in the start message); the server keeps nothing of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path

from litestar import Request, Response, get
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath

from veena.platform.errors import VeenaError
from veena.platform.hookspecs import hookimpl
from veena.platform.runtime import Runtime

WS_PATH = "/v1/tts/ws"
"""The WebSocket plugin's route: the page offers "speak as I type" when the app serves it."""
STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8"}
# Everything the page loads comes from this server; blob: is the MediaSource object URL.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "media-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'")
HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache",
           "X-Content-Type-Options": "nosniff"}


@cache
def _read(name: str) -> bytes:
    return (STATIC / name).read_bytes()


@get("/", include_in_schema=False)
async def index(request: Request) -> Response[bytes]:
    """The page itself; ``<body data-ws>`` tells it whether this server speaks WebSocket."""
    ws = any(route.path == WS_PATH for route in request.app.routes)
    body = _read("index.html").replace(b"<body>", b'<body data-ws="%s">' % (b"1" if ws else b""), 1)
    return Response(body, media_type="text/html; charset=utf-8", headers=HEADERS)


@get("/page/{name:str}", include_in_schema=False)
async def asset(name: FromPath[str]) -> Response[bytes]:
    """One of the page's own files; any other name is 404."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise VeenaError("not_found", f"no page asset {name!r}", 404)
    return Response(_read(name), media_type=media_type, headers=HEADERS)


@hookimpl
def veena_register_routes(runtime: Runtime) -> Iterable[BaseRouteHandler]:
    """``GET /`` and ``GET /page/{name}``."""
    return [index, asset]
