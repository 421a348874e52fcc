"""The Modal deployment of Veena: ``modal deploy modal_app.py`` (docs/deploy.md).

Two classes, two URLs. ``Veena``: the GPU data plane, the whole Litestar app (synthesis on
every interface) with ``@modal.asgi_app()``, many requests a container (``@modal.concurrent``).
``ControlPlane``: no GPU, a small image (CPU-only torch for the speaker encoder), many more
requests a container; the same app built with only the control-plane routes (voices, admin,
health: ``CONTROL_PLANE_PATHS``), against the same stores. Its image is built from this repository (pyproject's dependencies with
the GPU extras, then the project itself), the model Volume is mounted at ``/models`` and the
named Secrets become environment variables. Start-up, in three steps:

1. ``@modal.enter(snap=True)``: heavy imports and the CPU side (config, plugins, registries,
   voices); the container's memory is snapshotted here, so later cold starts resume from it.
2. ``@modal.enter(snap=False)``: the start-up hooks (the GPU engine loads and starts, stores
   connect), then a warm-up synthesis through the real pipeline; only then is the runtime ready
   (``/v1/tts/health`` 200).
3. the app's own start-up handler, which finds everything started.

A GPU fault drains the container: ``veena_drain`` stops it fetching inputs, so Modal routes new
requests elsewhere while the ones in flight finish or fail.

Every knob is a ``[deploy.modal]`` key of the configuration file (``VEENA_CONFIG``) or a
``VEENA_MODAL_<KEY>`` environment variable at deploy time (``veena.platform.deploy``). The
container re-imports this module and must resolve the very same settings, so the file and the
overrides travel with the deployment (``CONTAINER_ENV``).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import modal
import modal.experimental

from veena.platform.config import ENV_CONFIG, load_config
from veena.platform.deploy import MODEL_MOUNT, ModalSettings, modal_env, modal_settings, service_config
from veena.platform.hookspecs import hookimpl

log = logging.getLogger("veena.modal")

ROOT = Path(__file__).resolve().parent
SOURCE = ("pyproject.toml", "setup.py", "README.md", "platform", "codecs", "plugins", "speakers")
"""What the image's copy of the project holds (enough to build and install it)."""
SOURCE_IN_IMAGE = "/opt/veena/src"
CONFIG_IN_IMAGE = "/opt/veena/veena.toml"

LOCAL_CONFIG = os.environ.get(ENV_CONFIG)
SETTINGS: ModalSettings = modal_settings(load_config(LOCAL_CONFIG))
CONTAINER_ENV: dict[str, str] = {**modal_env(), **({ENV_CONFIG: CONFIG_IN_IMAGE} if LOCAL_CONFIG else {})}
"""Environment of the container: the deploy-time overrides, and the shipped configuration."""


def _not_source(path: Path) -> bool:
    return path.parts[0] not in SOURCE or "__pycache__" in path.parts


CONTROL_PLANE_PATHS = ("/v1/voices", "/v1/admin", "/v1/tts/health")
"""What the control plane serves: these paths and the ones under them. Synthesis stays on the
GPU class."""
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
CLONING_PACKAGES = ("torch", "safetensors", "pyyaml")
"""What the speaker encoder needs of the ``neural`` extra (not transformers, not vLLM)."""
CONTROL_DISABLED = ("apbwe",)
"""Plugins a control-plane container does not load: AP-BWE loads a model for synthesis."""


def control_plane_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in CONTROL_PLANE_PATHS)


def _requirements(extra: str, names: Iterable[str]) -> list[str]:
    """The requirement strings of ``names`` in pyproject's ``extra`` (versions stay there)."""
    import re
    import tomllib

    wanted = set(names)
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"][extra]
    found = [r for r in listed if re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() in wanted]
    if len(found) != len(wanted):
        raise RuntimeError(f"pyproject's [{extra}] extra lacks one of {sorted(wanted)}: {found}")
    return found


def _project(image: modal.Image, config_file: str | None) -> modal.Image:
    """The project installed from a copy of its source, then the configuration file (mounted,
    so editing it does not rebuild anything)."""
    image = (image.add_local_dir(ROOT, SOURCE_IN_IMAGE, copy=True, ignore=_not_source)
             .run_commands(f"python -m pip install --no-deps {SOURCE_IN_IMAGE}"))
    if config_file:
        image = image.add_local_file(config_file, CONFIG_IN_IMAGE)
    return image


def build_control_image(settings: ModalSettings, config_file: str | None) -> modal.Image:
    """The control plane's image: no CUDA, no vLLM, no transformers. CPU-only torch (from
    PyTorch's CPU index) with safetensors and PyYAML for the speaker encoder, pyproject's
    dependencies with ``settings.control_extras``, then the project."""
    image = (modal.Image.debian_slim(python_version=settings.python_version)
             .pip_install(*_requirements("neural", CLONING_PACKAGES), index_url=CPU_TORCH_INDEX,
                          extra_index_url="https://pypi.org/simple")
             .pip_install_from_pyproject(str(ROOT / "pyproject.toml"),
                                         optional_dependencies=list(settings.control_extras)))
    return _project(image, config_file)


def build_image(settings: ModalSettings, config_file: str | None) -> modal.Image:
    """Python, pyproject's dependencies with ``settings.extras`` (one cached layer that only
    changes with pyproject.toml), then the project installed from a copy of its source, then
    the configuration file (mounted, so editing it does not rebuild anything)."""
    image = (modal.Image.debian_slim(python_version=settings.python_version)
             .pip_install_from_pyproject(str(ROOT / "pyproject.toml"),
                                         optional_dependencies=list(settings.extras)))
    return _project(image, config_file)


def cls_options(settings: ModalSettings) -> dict[str, Any]:
    """The keyword arguments ``@app.cls`` gets (image and app aside): the settings as Modal
    spells them. ``declared_settings`` reports them; tests compare both with Modal's objects."""
    return {
        "gpu": settings.gpus(),
        "volumes": {MODEL_MOUNT: modal.Volume.from_name(settings.volume, create_if_missing=True)},
        "secrets": [modal.Secret.from_name(name) for name in settings.secrets],
        "env": CONTAINER_ENV or None,
        "min_containers": settings.min_containers,
        "max_containers": settings.max_containers,
        "buffer_containers": settings.buffer_containers,
        "scaledown_window": settings.scaledown_window,
        "timeout": settings.timeout,
        "startup_timeout": settings.startup_timeout,
        "enable_memory_snapshot": settings.memory_snapshot,
    }


def control_options(settings: ModalSettings) -> dict[str, Any]:
    """``@app.cls`` keywords of the control plane: no GPU, its own CPU, memory and autoscaling;
    the GPU class's Volume (the speaker encoder's weights), Secrets (the stores), environment
    and timeouts."""
    gpu = cls_options(settings)
    return {
        "cpu": settings.control_cpu,
        "memory": settings.control_memory,
        "volumes": gpu["volumes"],
        "secrets": gpu["secrets"],
        "env": gpu["env"],
        "min_containers": settings.control_min_containers,
        "max_containers": settings.control_max_containers,
        "scaledown_window": settings.scaledown_window,
        "timeout": settings.timeout,
        "startup_timeout": settings.startup_timeout,
        "enable_memory_snapshot": settings.memory_snapshot,
    }


def declared_settings() -> dict[str, Any]:
    """What this module declared to Modal, in plain values (for reviews and tests)."""
    options = cls_options(SETTINGS)
    return {
        "app": SETTINGS.app_name,
        "gpu": options["gpu"],
        "volumes": {path: SETTINGS.volume for path in options["volumes"]},
        "secrets": list(SETTINGS.secrets),
        "env": dict(CONTAINER_ENV),
        "max_inputs": SETTINGS.max_inputs,
        "target_inputs": SETTINGS.target_inputs,
        **{k: options[k] for k in ("min_containers", "max_containers", "buffer_containers",
                                   "scaledown_window", "timeout", "startup_timeout",
                                   "enable_memory_snapshot")},
        "snapshot_enter": SETTINGS.memory_snapshot,
        "request_deadline_s": SETTINGS.request_deadline_s(),
        "control_plane": ({"max_inputs": SETTINGS.control_max_inputs,
                           "paths": list(CONTROL_PLANE_PATHS),
                           **{k: v for k, v in control_options(SETTINGS).items()
                              if k not in ("volumes", "secrets", "env")}}
                          if SETTINGS.control_plane else None),
    }


class ModalDrain:
    """The drain action on Modal: stop fetching inputs, so this container takes no new requests
    and exits once the ones in flight end (``modal.experimental.stop_fetching_inputs``)."""

    @hookimpl
    async def veena_drain(self, reason: str, runtime: Any) -> None:
        try:
            await modal.experimental.stop_fetching_inputs.aio()
        except Exception as exc:  # noqa: BLE001 - outside a container it raises; keep serving 503s
            log.error("modal.stop_fetching_inputs_failed", extra={"reason": reason,
                                                                 "error": str(exc)})
            return
        log.warning("modal.stopped_fetching_inputs", extra={"reason": reason})


class Container:
    """What one container runs, free of Modal's decorators (so it runs and is tested anywhere).

    ``load`` is the snapshot-safe part: no GPU, no sockets. ``start`` does the rest. A
    ``control_plane`` container serves only ``CONTROL_PLANE_PATHS`` and synthesizes nothing.
    """

    def __init__(self, settings: ModalSettings, plugins: Iterable[tuple[str, object]] = (),
                 *, control_plane: bool = False) -> None:
        self.settings = settings
        self.plugins = list(plugins)
        self.control_plane = control_plane
        self.app: Any = None

    def load(self) -> None:
        from veena.platform.app import create_app

        for module in heavy_modules(self.settings, self.control_plane):
            importlib.import_module(module)
        if self.control_plane:
            config = control_config(load_config(), self.settings)
            paths = control_plane_path
        else:
            config, paths = service_config(load_config(), self.settings), None
        self.app = create_app(config, plugins=[("modal", ModalDrain()), *self.plugins],
                              paths=paths)

    async def start(self) -> None:
        from veena.platform import lifecycle

        runtime, pipeline = self.app.state.runtime, self.app.state.pipeline
        await lifecycle.start(runtime)
        if not self.control_plane:
            await lifecycle.warm_up(pipeline, self.settings.warm_up_text)
        lifecycle.mark_ready(runtime)


def control_config(config: Any, settings: ModalSettings) -> Any:
    """The service configuration of a control-plane container: the GPU class's (so the same
    stores, the same checkpoint for the speaker encoder), with the embedded eSpeak NG voice as
    the registered synthesizer (nothing loads onto a GPU; no synthesis route is served) and
    the plugins of ``CONTROL_DISABLED`` left out."""
    config.disable = list(dict.fromkeys([*config.disable, *CONTROL_DISABLED]))
    for name in CONTROL_DISABLED:
        config.plugins.pop(name, None)
    config = service_config(config, settings)
    config.stages.synthesizer = "espeak"
    if "spark" in config.plugins:
        config.plugins["spark"]["device"] = "cpu"
    config.plugins.setdefault("voices", {}).setdefault("device", "cpu")
    return config


def heavy_modules(settings: ModalSettings, control_plane: bool = False) -> list[str]:
    """Modules worth importing before the snapshot: importing them costs seconds and asks
    nothing of the GPU (torch initializes CUDA on first use). Nothing before the snapshot may
    ask either: torch caches the device count of its first query, and the snapshot phase has
    no GPU. vLLM is left for after the snapshot, since what its import queries is not checked
    here. The control plane imports the speaker encoder's modules only."""
    if settings.synthesizer != "spark":
        return []
    if control_plane:
        return ["torch", "veena.plugins.spark.bicodec.speaker", "veena.plugins.spark.cloning"]
    return ["torch", "transformers", "veena.plugins.spark.synthesizer",
            "veena.plugins.spark.bicodec"]


app = modal.App(SETTINGS.app_name, image=build_image(SETTINGS, LOCAL_CONFIG))


@app.cls(**cls_options(SETTINGS))
@modal.concurrent(max_inputs=SETTINGS.max_inputs, target_inputs=SETTINGS.target_inputs)
class Veena:
    """The GPU service; ``web`` is the HTTP endpoint."""

    @modal.enter(snap=SETTINGS.memory_snapshot)
    def load(self) -> None:
        from veena.platform.logs import configure_logging

        configure_logging()  # JSON lines on stderr, which Modal's log view keeps
        self.container = Container(SETTINGS)
        self.container.load()

    @modal.enter(snap=False)
    async def start(self) -> None:
        await self.container.start()

    @modal.asgi_app()
    def web(self) -> Any:
        return self.container.app


if SETTINGS.control_plane:
    @app.cls(image=build_control_image(SETTINGS, LOCAL_CONFIG), **control_options(SETTINGS))
    @modal.concurrent(max_inputs=SETTINGS.control_max_inputs)
    class ControlPlane:
        """The CPU control plane; ``web`` is its HTTP endpoint (voices, admin, health)."""

        @modal.enter(snap=SETTINGS.memory_snapshot)
        def load(self) -> None:
            from veena.platform.logs import configure_logging

            configure_logging()
            self.container = Container(SETTINGS, control_plane=True)
            self.container.load()

        @modal.enter(snap=False)
        async def start(self) -> None:
            await self.container.start()

        @modal.asgi_app()
        def web(self) -> Any:
            return self.container.app
