"""The ``veena`` command: serve, say, voices, plugins."""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys
from collections.abc import Callable, Iterable
from typing import BinaryIO

from veena.platform.config import VeenaConfig, load_config
from veena.platform.errors import ConfigError, VeenaError

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Command]] = {}


def command(name: str, setup: Callable[[argparse.ArgumentParser], None]):
    """Registers a sub-command: ``setup`` adds its arguments, the function runs it."""
    def wrap(fn: Command) -> Command:
        COMMANDS[name] = (setup, fn)
        return fn
    return wrap


def config_from_args(args: argparse.Namespace) -> VeenaConfig:
    """The ``--config`` file (default: ``$VEENA_CONFIG``) with the command line's flags over
    it: ``--synthesizer``, then each loaded plugin's own (``veena_apply_options``)."""
    from veena.platform.plugins import build_plugin_manager

    config = load_config(getattr(args, "config", None))
    if getattr(args, "synthesizer", None):
        config.stages.synthesizer = args.synthesizer
    pm, _sources = build_plugin_manager(config, getattr(args, "extra_plugins", ()))
    pm.hook.veena_apply_options(args=args, config=config)
    return config


SERVICE_COMMANDS = ("serve", "say")
"""Sub-commands that run the service and so take plugins' flags (``veena_serve_options``)."""


def _voice_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--synthesizer", help="synthesizer serving requests (config: stages.synthesizer)")


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to bind (default from config: 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default from config: 8000)")
    _voice_args(p)


@command("serve", _serve_args)
def serve(args: argparse.Namespace) -> int:
    """Runs the HTTP API (SIGTERM drains: see ``veena.platform.lifecycle``)."""
    from veena.platform import lifecycle
    from veena.platform.app import create_app

    config = config_from_args(args)
    if args.host:
        config.server.host = args.host
    if args.port:
        config.server.port = args.port
    from veena.platform.logs import configure_logging

    configure_logging()
    app = create_app(config)
    lifecycle.serve(app, config.server.host, config.server.port)
    return 0


def _say_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", help="text to speak ('-' reads standard input)")
    p.add_argument("--voice", help="speaker name or alias")
    p.add_argument("--format", help="output format (wav, mp3, opus_48000_64, ...)")
    p.add_argument("--rate", type=int, help="output sample rate in Hz")
    p.add_argument("--seed", type=int, help="sampling seed of a neural voice (same seed, same audio)")
    p.add_argument("-o", "--output", help="file to write (default: standard output)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also print the server's warnings (Redis, AP-BWE, ...), which mean "
                        "nothing for a one-off file")
    _voice_args(p)


@command("say", _say_args)
def say(args: argparse.Namespace) -> int:
    """Synthesizes text to a file or standard output, streaming as audio is produced."""
    import logging

    logging.basicConfig(level=logging.WARNING if args.verbose else logging.ERROR,
                        format="%(name)s: %(message)s")
    text = sys.stdin.read() if args.text == "-" else args.text
    out: BinaryIO = open(args.output, "wb") if args.output else sys.stdout.buffer
    try:
        job = asyncio.run(_say(config_from_args(args), text, args, out))
        if job.output.codec.name == "wav" and out.seekable():
            _patch_wav_sizes(out)
    finally:
        if args.output:
            out.close()
    print(f"{job.audio_seconds:.2f} s of {job.output.codec.name} at {job.output.sample_rate} Hz "
          f"({job.speaker.name}, {job.bytes_sent} bytes)", file=sys.stderr)
    return 0


async def _say(config: VeenaConfig, text: str, args: argparse.Namespace, out: BinaryIO):
    from veena.platform.awaitables import await_all
    from veena.platform.pipeline import Pipeline, new_request_id
    from veena.platform.plugins import build_runtime
    from veena.platform.schemas import GenerateRequest

    runtime = build_runtime(config)
    await await_all(runtime.pm.hook.veena_startup(runtime=runtime))
    pipeline = Pipeline(runtime)
    try:
        job = pipeline.prepare(GenerateRequest(text=text, speaker=args.voice, format=args.format,
                                               sample_rate=args.rate, seed=args.seed,
                                               stream=True),
                               new_request_id(None))
        async for data in pipeline.audio(job):
            out.write(data)
            out.flush()
        await pipeline.drain()
        return job
    finally:
        await await_all(reversed(runtime.pm.hook.veena_shutdown(runtime=runtime)))


def _patch_wav_sizes(f: BinaryIO) -> None:
    """A streamed WAV carries 0xFFFFFFFF sizes; a seekable file gets the exact ones."""
    size = f.seek(0, 2)
    f.seek(4)
    f.write(struct.pack("<I", size - 8))
    f.seek(40)
    f.write(struct.pack("<I", size - 44))


@command("voices", lambda p: None)
def voices(args: argparse.Namespace) -> int:
    """Lists the voices."""
    from veena.platform.plugins import build_runtime

    runtime = build_runtime(config_from_args(args))
    for s in runtime.speakers:
        print(f"{s.name:<12} {s.gender:<7} {','.join(s.languages):<10} {s.description}")
    return 0


@command("plugins", lambda p: None)
def plugins(args: argparse.Namespace) -> int:
    """Lists the loaded plugins and where each comes from."""
    from veena.platform.plugins import build_runtime, loaded_plugins

    runtime = build_runtime(config_from_args(args))
    for name, _plugin, source in loaded_plugins(runtime):
        print(f"{name:<12} {source}")
    for kind, registry in (("codecs", runtime.codecs), ("synthesizers", runtime.synthesizers),
                           ("normalizers", runtime.normalizers)):
        print(f"{kind}: {', '.join(f'{n} ({registry.owner(n)})' for n in registry.names())}")
    return 0


def _load_command_modules() -> None:
    import importlib
    import pkgutil

    from veena.platform import commands

    for module in pkgutil.iter_modules(commands.__path__):
        importlib.import_module(f"{commands.__name__}.{module.name}")


def build_parser(plugins: Iterable[tuple[str, object]] = ()) -> argparse.ArgumentParser:
    """The ``veena`` parser: core commands (those running the service with every plugin's
    ``veena_serve_options`` flags), then plugins' own commands (``plugins``: extra in-process
    (name, plugin) pairs next to the entry points)."""
    from veena.platform.plugins import build_plugin_manager

    _load_command_modules()
    plugins = tuple(plugins)
    pm, _sources = build_plugin_manager(load_config(None), plugins)
    parser = argparse.ArgumentParser(prog="veena", description="Veena text-to-speech")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (setup, fn) in COMMANDS.items():
        p = sub.add_parser(name, help=(fn.__doc__ or "").strip().splitlines()[0])
        p.add_argument("--config", help="TOML configuration file (default: $VEENA_CONFIG)")
        setup(p)
        if name in SERVICE_COMMANDS:
            pm.hook.veena_serve_options(parser=p)
        p.set_defaults(func=fn, extra_plugins=plugins)
    _plugin_commands(sub, pm)
    return parser


def _plugin_commands(sub: argparse._SubParsersAction, pm) -> None:
    """Sub-commands from ``veena_register_commands``; each also takes ``--config``."""
    try:
        pm.hook.veena_register_commands(subparsers=sub)
    except argparse.ArgumentError as exc:  # a name already taken
        raise ConfigError(f"a plugin's command clashes with another one: {exc}") from exc
    for p in sub.choices.values():
        if not any("--config" in a.option_strings for a in p._actions):
            p.add_argument("--config", help="TOML configuration file (default: $VEENA_CONFIG)")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (ConfigError, VeenaError) as exc:
        print(f"veena: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Run the canonical module, not this __main__ copy: command modules register into
    # veena.platform.cli.COMMANDS, which `python -m` would otherwise never look at.
    from veena.platform.cli import main as _main

    sys.exit(_main())
