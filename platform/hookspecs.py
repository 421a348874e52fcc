"""Every hook a Veena plugin can implement.

Calling patterns (see docs/hooks.md):

- **registration**: called once at start-up on every plugin; each returns an iterable of named
  objects that go into a registry which rejects duplicate names.
- **selection** (``firstresult``): the first non-None result wins. Only used where every
  implementation returns a plain value or an async iterator, never a coroutine.
- **chain** (``wrapper=True`` implementations): a built-in implementation does the work, and
  wrappers around it transform what it returns (``result = yield``; ``return changed``).
- **fan-out**: every implementation is called; results that are awaitable are awaited
  ("await me maybe").

Hooks are called once per stage per request, never per audio block.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Iterable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from litestar.handlers import BaseRouteHandler

    from veena.codecs.base import Codec
    from veena.platform.config import VeenaConfig
    from veena.platform.deploy import ModalSettings
    from veena.platform.alignment import WordTime
    from veena.platform.audio import PCM
    from veena.platform.job import Job, Principal
    from veena.platform.runtime import RequestInfo, Runtime, RequestRecord
    from veena.platform.synthesis import Synthesizer
    from veena.platform.text import Normalizer
    from veena.speakers import Speaker

PROJECT = "veena"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- start-up registration -------------------------------------------------------------------

@hookspec
def veena_register_codecs(runtime: Runtime) -> Iterable[Codec]:
    """Output formats this plugin provides.

    :param runtime: the application runtime (config, registries) being built.
    :return: codec objects (see ``veena.codecs.base.Codec``); their ``name`` and ``aliases``
        must be unique across all plugins.

    Called once at start-up on every plugin (registration pattern).
    """


@hookspec
def veena_register_synthesizers(runtime: Runtime) -> Iterable[Synthesizer]:
    """Voice back-ends this plugin provides.

    :param runtime: the application runtime; read this plugin's settings with
        ``runtime.plugin_config(name)``.
    :return: synthesizer objects (see ``veena.platform.synthesis.Synthesizer``) with unique names.

    Called once at start-up on every plugin (registration pattern).
    """


@hookspec
def veena_register_normalizers(runtime: Runtime) -> Iterable[Normalizer]:
    """Text normalizers this plugin provides.

    :param runtime: the application runtime.
    :return: normalizer objects (see ``veena.platform.text.Normalizer``) with unique names. They
        run in the order ``[stages] normalizers`` lists; unlisted ones run after,
        by their optional ``order`` attribute (default 100), then by name.

    Called once at start-up on every plugin (registration pattern).
    """


@hookspec
def veena_register_speakers(runtime: Runtime) -> Iterable[Speaker]:
    """Voices this plugin provides.

    :param runtime: the application runtime.
    :return: ``veena.speakers.Speaker`` objects; names and aliases must be unique.

    Called once at start-up on every plugin (registration pattern).
    """


@hookspec
def veena_register_routes(runtime: Runtime) -> Iterable[BaseRouteHandler]:
    """HTTP and WebSocket route handlers this plugin serves.

    :param runtime: the application runtime; a handler reaches it through
        ``request.app.state.runtime`` (or ``socket.app.state.runtime``).
    :return: Litestar route handlers (``@get``, ``@post``, ``@websocket``, ``WebsocketListener``
        subclasses, ``Router``...). A path that two plugins claim stops start-up with an error
        naming both.

    Called once when the app is built, on every plugin (registration pattern).
    """


@hookspec
def veena_register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Sub-commands this plugin adds to the ``veena`` command line.

    :param subparsers: the ``veena`` parser's sub-parsers. Add a parser with
        ``subparsers.add_parser(name, help=...)`` and ``set_defaults(func=fn)``, where
        ``fn(args) -> int`` runs the command and returns its exit code; ``args.config`` holds
        the ``--config`` path. A name that is already taken stops the CLI with an error.
    :return: None.

    Called once when the ``veena`` parser is built, on every plugin (registration pattern).
    """


# --- command line and deployment -------------------------------------------------------------

@hookspec
def veena_serve_options(parser: argparse.ArgumentParser) -> None:
    """Flags this plugin adds to the commands that run the service (``veena serve``, ``say``).

    :param parser: the sub-command's parser; add this plugin's own flags with
        ``parser.add_argument`` (default None, so an unset flag leaves the configuration alone).
    :return: None.

    Called once per such sub-command when the ``veena`` parser is built, on every plugin
    (registration pattern); ``veena_apply_options`` later reads the parsed values.
    """


@hookspec
def veena_apply_options(args: argparse.Namespace, config: VeenaConfig) -> None:
    """Writes this plugin's parsed flags (``veena_serve_options``) into the configuration.

    :param args: the parsed command line; a flag the command does not have is absent.
    :param config: the loaded configuration, changed in place; a plugin writes its own
        ``config.plugins[NAME]`` table (e.g. ``--model`` -> ``plugins.spark.model_path``).
    :return: None.

    Called once per command run, before the runtime is built, on every loaded plugin (fan-out).
    """


@hookspec
def veena_deploy_overrides(settings: ModalSettings, config: VeenaConfig) -> None:
    """Writes what a deployment decides for this plugin into the configuration it serves.

    :param settings: the deployment's settings (``[deploy.modal]`` with its environment
        overrides: synthesizer, engine, checkpoint paths, ``max_inputs`` ...).
    :param config: the configuration the deployment will serve, changed in place; a plugin
        writes its own ``config.plugins[NAME]`` table.
    :return: None.

    Called once by ``veena.platform.deploy.service_config``, after the core settings (host,
    synthesizer, deadline) are set, on every loaded plugin (fan-out).
    """


# --- lifecycle -------------------------------------------------------------------------------

@hookspec
def veena_startup(runtime: Runtime) -> Awaitable[None] | None:
    """Starts background work (engines, caches, queues) once the registries are filled.

    :param runtime: the application runtime.
    :return: None or an awaitable, which is awaited.

    Called once when the server starts, on every plugin (fan-out).
    """


@hookspec
def veena_shutdown(runtime: Runtime) -> Awaitable[None] | None:
    """Stops background work and drains queues.

    :param runtime: the application runtime.
    :return: None or an awaitable, which is awaited.

    Called once when the server stops, on every plugin (fan-out, in reverse start order).
    """


@hookspec
def veena_drain(reason: str, runtime: Runtime) -> Awaitable[None] | None:
    """Stops this process from taking new work after a fault it cannot recover from.

    :param reason: the fault's kind (``cuda_oom``, ``illegal_memory_access``, ``cuda_error``,
        ``engine_dead`` ...).
    :param runtime: the application runtime; ``runtime.phase`` is already ``draining``, so
        health answers 503 and new synthesis requests are refused.
    :return: None or an awaitable, which is awaited; errors are logged.

    Called once, the first time the runtime starts draining, on every plugin (fan-out), in a
    task of its own while requests in flight finish or fail. Nothing built in implements it (a
    plain server only logs); the Modal deployment stops fetching inputs here.
    """


# --- per-request stages ----------------------------------------------------------------------

@hookspec
def veena_authenticate(request: RequestInfo, runtime: Runtime) -> Principal | Awaitable[Principal | None] | None:
    """Decides who is calling and whether they may synthesize.

    :param request: method, path, headers and client address of the HTTP request.
    :param runtime: the application runtime.
    :return: a ``Principal`` (or an awaitable of one) to admit the request, None to abstain.
        Raise ``VeenaError`` (401, 402, 429 ...) to reject it.

    Called once per request before the response starts, on every plugin (fan-out, awaited);
    the first Principal returned wins. With no Principal at all the request is anonymous.
    """


@hookspec
def veena_auth_enforced(runtime: Runtime) -> bool | None:
    """Says whether this plugin refuses requests without credentials right now.

    :param runtime: the application runtime, started (``veena_startup`` has run).
    :return: True when this plugin requires credentials (an API key exists), False when it
        lets everyone in, None when it does not authenticate at all.

    Called once at start-up, after ``veena_startup``, on every plugin (fan-out): the server
    binds to a non-loopback address without ``server.allow_open_access`` only when one
    implementation returns True (``veena.platform.access.check_open_access``).
    """


@hookspec(firstresult=True)
def veena_resolve_speaker(name: str, principal: Principal | None,
                          runtime: Runtime) -> Speaker | None:
    """Finds the voice a request names when it is not (only) in the speaker catalog.

    :param name: the request's ``speaker`` / ``voice`` / ``voice_id`` (or the default speaker).
    :param principal: who is calling (None when anonymous): voices may belong to one caller.
    :param runtime: the application runtime.
    :return: a ``veena.speakers.Speaker`` to speak with, or None to leave ``name`` to the
        catalog (which answers 400 ``unknown_speaker`` for names it lacks). Synchronous (the
        pipeline prepares a request without awaiting); raise ``VeenaError`` to reject.

    Called once per request while it is prepared, before the catalog is asked (selection:
    first non-None result).
    """


@hookspec(firstresult=True)
def veena_normalize_text(text: str, job: Job, runtime: Runtime) -> str | None:
    """Turns the request text into what the voice should read.

    :param text: the original request text.
    :param job: the request (language, speaker, ``job.normalize`` switch).
    :param runtime: the application runtime (normalizer registry, config).
    :return: the normalized text. The built-in ``core`` plugin runs the registered normalizers
        in configured order; wrappers may change its result.

    Called once per request, after authentication (chain: first result, wrappers around it).
    """


@hookspec(firstresult=True)
def veena_chunk_text(text: str, job: Job, runtime: Runtime) -> list[str] | None:
    """Splits normalized text into the chunks the synthesizer generates in order.

    :param text: the normalized text.
    :param job: the request (``job.chunking`` switch, synthesizer).
    :param runtime: the application runtime.
    :return: a non-empty list of chunks (the whole text as one chunk when chunking is off).

    Called once per request, after normalization (selection: first non-None result).
    """


@hookspec(firstresult=True)
def veena_synthesize(job: Job, runtime: Runtime) -> AsyncIterator[PCM] | None:
    """Starts synthesis of ``job.chunks`` and returns its audio stream.

    :param job: the request with its chunks, speaker and synthesizer (the resolved object,
        ``job.synthesizer``) filled in.
    :param runtime: the application runtime.
    :return: an async iterator of ``PCM`` blocks (not a coroutine). The built-in ``core`` plugin
        returns ``job.synthesizer.stream(job)``.

    Called once per request when the response starts (selection: first non-None result).
    """


@hookspec(firstresult=True)
def veena_process_audio(stream: AsyncIterator[PCM], job: Job, runtime: Runtime) -> AsyncIterator[PCM] | None:
    """Transforms the synthesized audio stream (super-resolution, effects).

    :param stream: the audio from synthesis (or from the processor inside this one).
    :param job: the request; ``job.output.sample_rate`` is the rate the client asked for.
    :param runtime: the application runtime.
    :return: an async iterator of PCM blocks. The built-in ``core`` implementation returns the
        stream unchanged; processors implement this hook with ``wrapper=True`` and return a
        stream that wraps the inner one.

    Called once per request (chain of wrappers around the core implementation).
    """


@hookspec(firstresult=True)
def veena_encode(stream: AsyncIterator[PCM], job: Job, runtime: Runtime) -> AsyncIterator[bytes] | None:
    """Encodes the audio stream into the output format's bytes.

    :param stream: the processed audio.
    :param job: the request; ``job.output`` holds the codec (the resolved object), rate and
        bitrate, checked when the request was prepared.
    :param runtime: the application runtime.
    :return: an async iterator of byte strings, each sent to the client as it comes. The
        built-in ``core`` plugin encodes with the registered codec off the event loop.

    Called once per request (selection: first non-None result).
    """


@hookspec(firstresult=True)
def veena_align(job: Job, chunk: int, audio: PCM,
                runtime: Runtime) -> list[WordTime] | Awaitable[list[WordTime] | None] | None:
    """Word times of one chunk, for requests that asked for timestamps.

    :param job: the request; the chunk's text is ``job.chunks[chunk]``. Word starts the
        synthesizer measured itself (eSpeak NG's word events) are in
        ``job.state[veena.platform.alignment.WordMarks]``.
    :param chunk: the index of the chunk whose audio has just completed.
    :param audio: that chunk's audio as the synthesizer made it (before speed and
        processing), from its first sample to the next chunk's.
    :param runtime: the application runtime.
    :return: ``veena.platform.alignment.WordTime`` items (character offsets into the chunk,
        seconds from the start of ``audio``, ``estimated``), an awaitable of them (do slow work
        off the event loop), or None to leave the chunk to the next implementation. The
        built-in ``core`` implementation (``trylast``) answers with the synthesizer's word
        marks (exact) or else an estimate by character count.

    Called once per chunk, as soon as its audio is complete, only on requests with word
    timestamps (selection: first non-None result). The platform maps the offsets back to the
    client's text and the times onto the delivered audio.
    """


@hookspec
def veena_request_finished(record: RequestRecord, runtime: Runtime) -> Awaitable[None] | None:
    """Records a finished request (storage, usage, billing).

    :param record: what was asked, what was delivered, timings and outcome; never blocks the
        first byte because it runs after the response is complete (or cancelled).
    :param runtime: the application runtime.
    :return: None or an awaitable, which is awaited; errors are logged, never raised to clients.

    Called once per request after its stream ends for any reason (fan-out).
    """


HOOK_NAMES: tuple[str, ...] = tuple(
    name for name, value in dict(globals()).items()
    if name.startswith("veena_") and callable(value))
"""All hook names, for documentation checks."""

