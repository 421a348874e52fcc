"""Registers the voices shipped in ``speakers/voices`` and any operator voice folders
(one TOML file a voice)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from veena.platform.errors import ConfigError
from veena.platform.hookspecs import hookimpl
from veena.platform.runtime import Runtime
from veena.speakers import load_catalog


class Config(msgspec.Struct, forbid_unknown_fields=True):
    """``[plugins.catalog]``."""

    folders: list[str] = []
    """Extra folders of voice TOML files (e.g. voices with pinned Veena3 global tokens),
    registered after the shipped voices; a name clash stops start-up."""


@hookimpl
def veena_register_speakers(runtime: Runtime):
    cfg: Config = runtime.plugin_config("catalog") or Config()
    voices = load_catalog()
    for folder in cfg.folders:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise ConfigError(f"invalid configuration: `plugins.catalog.folders`: {folder!r} is "
                              "not a folder")
        voices += load_catalog(path)
    return voices
