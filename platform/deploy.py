"""Settings of the Modal deployment (``modal_app.py``) and the service configuration it runs.

One struct, ``ModalSettings``, read from the ``[deploy.modal]`` table of the configuration file
(``VEENA_CONFIG``); any key can be overridden at deploy time by an environment variable
``VEENA_MODAL_<KEY>`` (upper case; lists comma-separated), e.g. ``VEENA_MODAL_GPU=A100-80GB``.
Plain Python, no Modal import: the service and its tests read it without the ``modal`` package.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec

if TYPE_CHECKING:
    from veena.platform.config import VeenaConfig

ENV_PREFIX = "VEENA_MODAL_"
MODEL_MOUNT = "/models"
"""Where the model Volume is mounted in the container."""
DEADLINE_MARGIN_S = 5.0
"""Seconds between the request deadline the service enforces and Modal's timeout, so a stream
that runs long is ended by the service (a complete file) before Modal cuts it."""


class ModalSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[deploy.modal]``: the GPU class, autoscaling, timeouts, snapshots, engine and paths."""

    app_name: str = "veena"
    gpu: str = "H100"
    gpu_fallbacks: list[str] = msgspec.field(default_factory=lambda: ["H200", "A100-80GB"])
    """GPU types Modal may use when ``gpu`` is not available, in order of preference."""
    min_containers: int = 0
    max_containers: int = 4
    buffer_containers: int = 0
    scaledown_window: int = 300
    """Seconds an idle container stays up (2..3600)."""
    max_inputs: int = 64
    """Requests one container serves at once (``@modal.concurrent``); also the engine's slots."""
    target_inputs: int = 48
    """Requests per container the autoscaler aims at before adding containers."""
    timeout: int = 150
    """Seconds one request may run: Modal's web request limit. The service refuses text that
    cannot be spoken in time and ends late streams itself ``DEADLINE_MARGIN_S`` earlier."""
    startup_timeout: int = 600
    """Seconds a container may take to start (model load, engine start, warm-up)."""
    memory_snapshot: bool = True
    """Snapshot the container after imports and CPU-side set-up (``@modal.enter(snap=True)``)."""
    synthesizer: str = "spark"
    engine: Literal["torch", "hf", "vllm"] = "torch"
    model_path: str = f"{MODEL_MOUNT}/veena3"
    """The Veena3 checkpoint (``LLM/`` and ``BiCodec/``) on the Volume."""
    apbwe_path: str = f"{MODEL_MOUNT}/apbwe/16kto48k"
    """The AP-BWE super-resolution checkpoint; without one 48 kHz output is resampled."""
    volume: str = "veena-models"
    secrets: list[str] = msgspec.field(default_factory=lambda: ["veena-secrets"])
    """Modal Secrets whose keys become environment variables (DATABASE_URL, REDIS_URL, ...)."""
    python_version: str = "3.12"
    extras: list[str] = msgspec.field(default_factory=lambda: ["neural", "vllm", "otlp", "supabase"])
    """Optional dependency groups of pyproject.toml installed in the image."""
    warm_up_text: str = "Hello! This is a short warm-up sentence."
    control_plane: bool = True
    """Also deploy the CPU control plane: voices, admin and health, without a GPU."""
    control_cpu: float = 1.0
    """CPU cores of a control-plane container."""
    control_memory: int = 2048
    """MiB of memory of a control-plane container (the speaker encoder takes about 100)."""
    control_max_inputs: int = 256
    """Requests one control-plane container serves at once."""
    control_min_containers: int = 0
    control_max_containers: int = 4
    control_extras: list[str] = msgspec.field(default_factory=lambda: ["otlp", "supabase"])
    """Extras of the control plane's image; it gets CPU-only torch for the speaker encoder."""

    def __post_init__(self) -> None:
        if not 0 <= self.min_containers <= self.max_containers or self.max_containers < 1:
            raise ValueError("need 0 <= min_containers <= max_containers and max_containers >= 1")
        if self.buffer_containers < 0:
            raise ValueError("buffer_containers must be >= 0")
        if not 2 <= self.scaledown_window <= 3600:
            raise ValueError("scaledown_window must be between 2 and 3600 seconds")
        if not 1 <= self.target_inputs <= self.max_inputs:
            raise ValueError("need 1 <= target_inputs <= max_inputs")
        if self.timeout <= DEADLINE_MARGIN_S or self.startup_timeout < 1:
            raise ValueError(f"timeout must exceed {DEADLINE_MARGIN_S:g} s and startup_timeout "
                             "must be positive")
        if not self.gpu:
            raise ValueError("gpu must name a GPU type")
        if self.control_cpu <= 0 or self.control_memory < 256 or self.control_max_inputs < 1:
            raise ValueError("need control_cpu > 0, control_memory >= 256 (MiB) and "
                             "control_max_inputs >= 1")
        if not 0 <= self.control_min_containers <= self.control_max_containers \
                or self.control_max_containers < 1:
            raise ValueError("need 0 <= control_min_containers <= control_max_containers and "
                             "control_max_containers >= 1")

    def gpus(self) -> str | list[str]:
        """What ``@app.cls(gpu=...)`` gets: one type, or the list form with fallbacks."""
        return [self.gpu, *self.gpu_fallbacks] if self.gpu_fallbacks else self.gpu

    def request_deadline_s(self) -> float:
        return self.timeout - DEADLINE_MARGIN_S


def _field_types() -> dict[str, Any]:
    return {f.name: f.type for f in msgspec.structs.fields(ModalSettings)}


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    from veena.platform.errors import ConfigError

    types = _field_types()
    out: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name not in types:
            raise ConfigError(f"unknown setting {key}; the VEENA_MODAL_* variables are "
                              f"{', '.join(ENV_PREFIX + n.upper() for n in sorted(types))}")
        if getattr(types[name], "__origin__", None) is list:
            out[name] = [item.strip() for item in raw.split(",") if item.strip()]
        else:
            out[name] = raw
    return out


def modal_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``VEENA_MODAL_*`` variables set in ``environ`` (default: this process)."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k.startswith(ENV_PREFIX)}


def modal_settings(config: VeenaConfig, environ: Mapping[str, str] | None = None) -> ModalSettings:
    """``config.deploy.modal`` with the ``VEENA_MODAL_*`` variables of ``environ`` (default:
    this process) applied over it; a bad value raises ConfigError naming the key."""
    from veena.platform.errors import ConfigError, config_error

    table = msgspec.to_builtins(config.deploy.modal)
    overrides = _env_overrides(os.environ if environ is None else environ)
    try:
        return msgspec.convert({**table, **overrides}, ModalSettings, strict=False)
    except msgspec.ValidationError as exc:
        error = config_error(exc, "deploy.modal.")
        if overrides:
            raise ConfigError(f"{error} (after the {', '.join(ENV_PREFIX + k.upper() for k in overrides)}"
                              " environment overrides)") from exc
        raise error from exc


def service_config(config: VeenaConfig, settings: ModalSettings) -> VeenaConfig:
    """The configuration a Modal container serves with: ``config`` bound to all interfaces
    (so the open-access check applies: keys, or ``server.allow_open_access``), the deployment's
    synthesizer, the request deadline from ``timeout`` unless the file sets one, and what each
    loaded plugin takes from the settings (``veena_deploy_overrides``: the neural voice's
    checkpoint, engine and slots, the super-resolution checkpoint). Changes ``config`` in place."""
    from veena.platform.plugins import build_plugin_manager

    config.server.host = "0.0.0.0"
    config.stages.synthesizer = settings.synthesizer
    if config.server.request_deadline_s is None:
        config.server.request_deadline_s = settings.request_deadline_s()
    pm, _sources = build_plugin_manager(config)
    pm.hook.veena_deploy_overrides(settings=settings, config=config)
    return config
