"""Builds the plugin manager and runtime: entry points, per-plugin config, registries."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import time
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

import pluggy

from veena.platform import hookspecs
from veena.platform.config import VeenaConfig, plugin_settings
from veena.platform.errors import ConfigError
from veena.platform.registry import DuplicateNameError
from veena.platform.runtime import Runtime
from veena.platform.telemetry import Telemetry
from veena.speakers import SpeakerCatalog

log = logging.getLogger("veena.plugins")

ENTRY_POINT_GROUP = "veena"
REQUIRED_HOOKS = ("veena_normalize_text", "veena_chunk_text", "veena_synthesize",
                  "veena_process_audio", "veena_encode")


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    seen: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in seen and seen[ep.name].value != ep.value:
            raise ConfigError(f"two installed plugins are called {ep.name!r}: "
                              f"{seen[ep.name].value} and {ep.value}")
        seen[ep.name] = ep
    return sorted(seen.values(), key=lambda ep: ep.name)


def build_plugin_manager(config: VeenaConfig,
                         extra: Iterable[tuple[str, object]] = ()) -> tuple[pluggy.PluginManager, dict[str, str]]:
    """Loads every ``veena`` entry point not disabled in config, plus ``extra`` (name, plugin)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    sources: dict[str, str] = {}
    available = set()
    for ep in _entry_points():
        available.add(ep.name)
        if ep.name in config.disable:
            pm.set_blocked(ep.name)
            continue
        plugin = ep.load()
        pm.register(plugin, name=ep.name)
        dist = ep.dist.name if ep.dist else "?"
        sources[ep.name] = f"{ep.value} ({dist})"
    for name, plugin in extra:
        available.add(name)
        if name not in config.disable:
            pm.register(plugin, name=name)
            sources[name] = f"{getattr(plugin, '__name__', type(plugin).__name__)} (in-process)"
    unknown = sorted(set(config.disable) - available)
    if unknown:
        raise ConfigError(f"invalid configuration: `disable` names unknown plugin(s) {unknown}; "
                          f"installed: {sorted(available)}")
    pm.check_pending()
    if os.environ.get("VEENA_TRACE_HOOKS") == "1":
        trace_hook_calls(pm)
    return pm, sources


def trace_hook_calls(pm: pluggy.PluginManager) -> None:
    """Logs every hook call with the plugins it reaches and how long it took (``veena.hooks``)."""
    trace = logging.getLogger("veena.hooks")
    started: dict[int, float] = {}

    def before(hook_name: str, impls: list[pluggy.HookImpl], kwargs: dict[str, Any]) -> None:
        started[id(kwargs)] = time.perf_counter()

    def after(outcome: Any, hook_name: str, impls: list[pluggy.HookImpl],
              kwargs: dict[str, Any]) -> None:
        took = (time.perf_counter() - started.pop(id(kwargs), time.perf_counter())) * 1000
        trace.info("hook %s -> [%s] %.3f ms%s", hook_name,
                   ", ".join(i.plugin_name for i in impls), took,
                   " (raised)" if outcome.exception is not None else "")

    pm.add_hookcall_monitoring(before, after)


def call_each(pm: pluggy.PluginManager, hook: str, **kwargs: Any) -> Iterator[tuple[str, Any]]:
    """Calls ``hook`` through pluggy on one plugin at a time: (plugin name, its result)."""
    impls = getattr(pm.hook, hook).get_hookimpls()
    for impl in impls:
        others = [i.plugin for i in impls if i is not impl]
        results = pm.subset_hook_caller(hook, remove_plugins=others)(**kwargs)
        yield impl.plugin_name, results[0] if results else None


def _plugin_configs(pm: pluggy.PluginManager, config: VeenaConfig) -> dict[str, Any]:
    loaded = {name: plugin for name, plugin in pm.list_name_plugin() if plugin is not None}
    for name in config.plugins:
        if name not in loaded:
            raise ConfigError(f"invalid configuration: `plugins.{name}` configures a plugin that "
                              f"is not loaded; loaded: {sorted(loaded)}")
    return {name: plugin_settings(name, getattr(plugin, "Config", None), config.plugins.get(name, {}))
            for name, plugin in loaded.items()}


def _register(runtime: Runtime, hook: str, add) -> None:
    for owner, items in call_each(runtime.pm, hook, runtime=runtime):
        for item in items or ():
            try:
                add(item, owner)
            except DuplicateNameError as exc:
                raise ConfigError(str(exc)) from exc


def build_runtime(config: VeenaConfig, extra: Iterable[tuple[str, object]] = ()) -> Runtime:
    """Plugin manager, per-plugin config and filled registries; validates stage choices."""
    pm, sources = build_plugin_manager(config, extra)
    runtime = Runtime(config=config, pm=pm, speakers=SpeakerCatalog(),
                      telemetry=Telemetry(config.telemetry),
                      plugin_configs=_plugin_configs(pm, config), plugin_sources=sources)
    _register(runtime, "veena_register_codecs", _add_codec(runtime))
    _register(runtime, "veena_register_synthesizers", runtime.synthesizers.add)
    _register(runtime, "veena_register_normalizers", runtime.normalizers.add)
    _register(runtime, "veena_register_speakers", lambda s, owner: runtime.speakers.add(s))
    _validate(runtime)
    return runtime


def _add_codec(runtime: Runtime):
    def add(codec, owner: str) -> None:
        for alias in codec.aliases:
            if runtime.codec(alias) is not None:
                raise DuplicateNameError(f"codec alias {alias!r} of {codec.name!r} ({owner}) "
                                         "is already taken")
        runtime.codecs.add(codec, owner)
    return add


def _validate(runtime: Runtime) -> None:
    for hook in REQUIRED_HOOKS:
        if not getattr(runtime.pm.hook, hook).get_hookimpls():
            raise ConfigError(f"no loaded plugin implements {hook}; is the `core` plugin disabled?")
    cfg = runtime.config
    if cfg.stages.synthesizer not in runtime.synthesizers:
        raise ConfigError(f"invalid configuration: `stages.synthesizer` = {cfg.stages.synthesizer!r}"
                          f" is not a registered synthesizer; choose from {runtime.synthesizers.names()}")
    for name in cfg.stages.normalizers:
        if name not in runtime.normalizers:
            raise ConfigError(f"invalid configuration: `stages.normalizers` names {name!r}; "
                              f"registered: {runtime.normalizers.names()}")
    if runtime.codec(cfg.defaults.format) is None:
        raise ConfigError(f"invalid configuration: `defaults.format` = {cfg.defaults.format!r}; "
                          f"choose from {runtime.codecs.names()}")
    if len(runtime.speakers):
        try:
            runtime.speakers.resolve(cfg.defaults.speaker)
        except Exception as exc:
            raise ConfigError(f"invalid configuration: `defaults.speaker` = "
                              f"{cfg.defaults.speaker!r} is not a known voice; "
                              f"choose from {runtime.speakers.names()}") from exc


def loaded_plugins(runtime: Runtime) -> list[tuple[str, ModuleType | object, str]]:
    """(name, plugin, where it came from) for every loaded plugin."""
    return [(name, plugin, runtime.plugin_sources.get(name, "?"))
            for name, plugin in runtime.pm.list_name_plugin() if plugin is not None]


def plugin_routes(runtime: Runtime, core: Iterable[Any] = ()) -> list[Any]:
    """Route handlers from ``veena_register_routes``, after ``core``; one path and method
    claimed twice is a ``ConfigError`` naming both owners."""
    claimed: dict[tuple[str, str], str] = {}
    handlers: list[Any] = []

    def claim(items: Iterable[Any], owner: str) -> None:
        for handler in items or ():
            for key in route_keys(handler):
                if key in claimed:
                    raise ConfigError(f"route {key[1]} {key[0]} of plugin {owner!r} is already "
                                      f"served by {claimed[key]!r}")
                claimed[key] = owner
            handlers.append(handler)

    claim(core, "core routes")
    for owner, items in call_each(runtime.pm, "veena_register_routes", runtime=runtime):
        claim(items, owner)
    return handlers


def route_keys(handler: Any) -> list[tuple[str, str]]:
    """(path, method) pairs a route handler or router serves; WebSocket counts as a method."""
    from litestar import Router
    from litestar.handlers import HTTPRouteHandler

    if isinstance(handler, Router):
        return [(route.path, method) for route in handler.routes
                for method in (getattr(route, "methods", None) or {"WEBSOCKET"})]
    if isinstance(handler, type):  # a Controller or WebsocketListener class
        return [(handler.path, "WEBSOCKET" if hasattr(handler, "on_receive") else "CONTROLLER")]
    methods = sorted(handler.http_methods) if isinstance(handler, HTTPRouteHandler) else ["WEBSOCKET"]
    return [(path, method) for path in handler.paths for method in methods]
