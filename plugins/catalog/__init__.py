"""Registers the voices shipped in ``speakers/voices`` (one TOML file a voice)."""

from __future__ import annotations

from veena.platform.hookspecs import hookimpl
from veena.platform.runtime import Runtime
from veena.speakers import load_catalog


@hookimpl
def veena_register_speakers(runtime: Runtime):
    return load_catalog()
