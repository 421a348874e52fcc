"""Built-in output formats: wav, pcm, mulaw, alaw, opus, mp3, flac and aac, encoded with PyAV."""

from __future__ import annotations

from veena.codecs.catalog import CODECS
from veena.platform.hookspecs import hookimpl


@hookimpl
def veena_register_codecs(runtime):
    return list(CODECS)
