"""Builds the plugin manager and runtime: entry points, per-plugin config, registries."""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Iterable
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
    return pm, sources


def _plugin_configs(pm: pluggy.PluginManager, config: VeenaConfig) -> dict[str, Any]:
    loaded = {name: plugin for name, plugin in pm.list_name_plugin() if plugin is not None}
    for name in config.plugins:
        if name not in loaded:
            raise ConfigError(f"invalid configuration: `plugins.{name}` configures a plugin that "
                              f"is not loaded; loaded: {sorted(loaded)}")
    return {name: plugin_settings(name, getattr(plugin, "Config", None), config.plugins.get(name, {}))
            for name, plugin in loaded.items()}


def _register(runtime: Runtime, hook: str, add) -> None:
    for impl in getattr(runtime.pm.hook, hook).get_hookimpls():
        items = getattr(impl.plugin, hook)(runtime=runtime)
        for item in items or ():
            try:
                add(item, impl.plugin_name)
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
