"""Typed configuration: one TOML file decoded with msgspec; each plugin brings its own struct."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from veena.platform.deploy import ModalSettings
from veena.platform.errors import ConfigError, config_error

ENV_CONFIG = "VEENA_CONFIG"


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True):
    """How the HTTP server listens and what it announces."""

    host: str = "127.0.0.1"
    port: int = 8000
    model_version: str = "veena-0.1"
    max_text_chars: int = 50_000
    allow_open_access: bool = False
    """Serve without authentication on a non-loopback address (refused otherwise)."""
    request_deadline_s: float | None = None
    """Longest a synthesis request may take, or None for no limit. With a limit, text whose
    audio would not be synthesized in time is refused up front (413 ``audio_too_long``), and a
    stream still running at the deadline ends cleanly at the next audio block. The Modal
    deployment sets it from its request timeout (docs/deploy.md)."""
    deadline_rtf: float = 0.6
    """The slowest real-time factor (synthesis time / audio time) expected under load, used to
    estimate whether a text fits the deadline."""
    speech_chars_per_second: float = 15.0
    """Characters of normalized text spoken a second, used to estimate a text's audio length."""
    max_body_bytes: int = 1_048_576
    """Largest request body (413 ``body_too_large`` above it); 1 MiB holds 50,000 characters
    of UTF-8 text even with every one JSON-escaped."""
    max_header_bytes: int = 32_768
    """Largest total size of a request's headers (431 ``headers_too_large`` above it)."""
    shutdown_grace_s: float = 25.0
    """After SIGTERM, how long streams in flight may go on before each is ended properly
    (fits the 30 s Kubernetes and Modal give before SIGKILL)."""

    def __post_init__(self) -> None:
        if self.request_deadline_s is not None and self.request_deadline_s <= 0:
            raise ValueError("request_deadline_s must be positive (or left out for no limit)")
        if self.deadline_rtf <= 0 or self.speech_chars_per_second <= 0:
            raise ValueError("deadline_rtf and speech_chars_per_second must be positive")
        if self.max_body_bytes < 1024 or self.max_header_bytes < 1024:
            raise ValueError("max_body_bytes and max_header_bytes must be at least 1024")
        if self.shutdown_grace_s < 0:
            raise ValueError("shutdown_grace_s cannot be negative")


class DefaultsConfig(msgspec.Struct, forbid_unknown_fields=True):
    """What a request gets when it leaves a field out."""

    speaker: str = "kavya"
    format: str = "wav"
    sample_rate: int | None = None
    stream: bool = True
    normalize: bool = True
    chunking: bool = True


class StagesConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Which implementation serves each stage."""

    synthesizer: str = "espeak"
    normalizers: list[str] = []
    """Normalizers to run first, in this order; every other registered normalizer runs after
    them, by its ``order`` attribute and then by name (built-ins: ``unicode``, then ``text``)."""


class TelemetryConfig(msgspec.Struct, forbid_unknown_fields=True):
    """``[telemetry]``: where traces go (none by default) and the service name."""

    traces: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: str | None = None
    """OTLP/HTTP traces endpoint; default from ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
    service_name: str = "veena"


class DeployConfig(msgspec.Struct, forbid_unknown_fields=True):
    """``[deploy.*]``: how deployments run this configuration (read by their entry points)."""

    modal: ModalSettings = msgspec.field(default_factory=ModalSettings)


class VeenaConfig(msgspec.Struct, forbid_unknown_fields=True):
    """The whole configuration file."""

    disable: list[str] = []
    """Plugins (entry-point names) not to load."""
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    defaults: DefaultsConfig = msgspec.field(default_factory=DefaultsConfig)
    stages: StagesConfig = msgspec.field(default_factory=StagesConfig)
    telemetry: TelemetryConfig = msgspec.field(default_factory=TelemetryConfig)
    deploy: DeployConfig = msgspec.field(default_factory=DeployConfig)
    plugins: dict[str, dict[str, Any]] = {}
    """Per-plugin tables, ``[plugins.NAME]``, each decoded into that plugin's ``Config`` struct."""


def load_config(path: str | os.PathLike[str] | None = None) -> VeenaConfig:
    """Reads ``path`` (or ``$VEENA_CONFIG``); with neither, returns the defaults."""
    path = path or os.environ.get(ENV_CONFIG)
    if not path:
        return VeenaConfig()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text("utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file {p} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: {exc}") from exc
    return parse_config(data)


def parse_config(data: dict[str, Any]) -> VeenaConfig:
    """Validates a decoded TOML document; the error names the offending key."""
    try:
        return msgspec.convert(data, VeenaConfig)
    except msgspec.ValidationError as exc:
        raise config_error(exc, "") from exc


def plugin_settings(name: str, struct: type[msgspec.Struct] | None, table: dict[str, Any]) -> Any:
    """Decodes ``[plugins.NAME]`` into the plugin's struct, naming any bad key."""
    if struct is None:
        if table:
            raise ConfigError(f"invalid configuration: plugin {name!r} takes no settings "
                              f"(found `plugins.{name}.{next(iter(table))}`)")
        return None
    try:
        return msgspec.convert(table, struct)
    except msgspec.ValidationError as exc:
        raise config_error(exc, f"plugins.{name}.") from exc
