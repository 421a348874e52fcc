"""Voices as data: clone a voice from a reference clip and manage it over HTTP.

- ``POST /v1/voices`` (multipart ``file``, ``name``, ``consent=true``, optional ``description``,
  ``languages`` (comma-separated), ``gender``; or JSON with ``audio_base64``) clones a voice with
  the BiCodec speaker encoder (``veena.plugins.spark.cloning``) and answers 201 with it;
  ElevenLabs' ``POST /v1/voices/add`` (multipart ``name``, ``files``) answers ``{"voice_id"}``.
- ``GET /v1/voices``: the catalog plus the caller's own voices; ``GET/PATCH/DELETE
  /v1/voices/{id}``: another owner's voice, or a deleted one, is a 404.
- ``veena_resolve_speaker``: a voice id is usable as ``speaker`` / ``voice`` on every route.

Owner: the caller's API key id (``"local"`` with open access). Voices (32 global tokens and
metadata, never the clip) are kept in the auth plugin's database (``store.py``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any, Literal

import msgspec

from veena.platform.db import BACKENDS, chosen_backend, data_dir
from veena.platform.errors import ConfigError, VeenaError
from veena.platform.hookspecs import hookimpl
from veena.platform.job import Principal
from veena.platform.runtime import Runtime
from veena.plugins.voices.store import TableMissing, VoiceRecord, VoiceStore, open_store
from veena.speakers import Speaker

log = logging.getLogger("veena.voices")
NAME = "voices"
SYNTHESIZER = "spark"
"""The only synthesizer that can use a voice's global tokens."""
VOICE_ID = re.compile(r"^vc_[0-9a-f]{20}$")
LOCAL_OWNER = "local"


class Config(msgspec.Struct, forbid_unknown_fields=True):
    """``[plugins.voices]``."""

    backend: str | None = None
    """None: the auth plugin's ``backend`` (auto: DATABASE_URL > SQLite)."""
    sqlite_path: str | None = None
    """None: the auth plugin's ``sqlite_path`` (default $VEENA_DATA_DIR/veena.db)."""
    max_clip_bytes: int = 20 * 1024 * 1024
    """Larger uploads are a 400 ``clip_too_large`` (``server.max_body_bytes`` applies first)."""
    min_clip_seconds: float = 2.0
    max_clip_seconds: float = 60.0
    device: str = "cpu"
    """Where the speaker encoder runs."""
    clone_credits: int = 0
    """What cloning a voice costs a metered key (0: free)."""
    add_consent: Literal["required", "account"] = "required"
    """``POST /v1/voices/add`` (ElevenLabs' shape, which has no consent field): ``required``
    asks for ``consent=true`` there as on ``POST /v1/voices``; ``account``: the key's owner
    accepted the operator's terms that every clip's speaker agreed (ElevenLabs' own model), so
    the field may be left out there (``consent=false`` is still refused)."""

    def __post_init__(self) -> None:
        if self.backend is not None and self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}")
        if self.clone_credits < 0:
            raise ValueError("clone_credits must be at least 0")
        if self.max_clip_bytes < 1 or not 0 < self.min_clip_seconds < self.max_clip_seconds:
            raise ValueError("max_clip_bytes must be positive and "
                             "0 < min_clip_seconds < max_clip_seconds")


class Voices:
    """One process's voice store and (lazily loaded) speaker encoder."""

    def __init__(self, config: Config, store: VoiceStore, runtime: Runtime) -> None:
        self.config = config
        self.store = store
        self.runtime = runtime
        self._encoder: Any = None
        self._lock = threading.Lock()

    def encoder(self) -> Any:
        """The BiCodec speaker encoder of the configured Veena3 checkpoint (blocking load)."""
        spark = self.runtime.plugin_config(SYNTHESIZER)
        if spark is None or not getattr(spark, "model_path", None):
            raise VeenaError("cloning_unavailable", "cloning a voice needs the `spark` "
                             "synthesizer's checkpoint (its BiCodec speaker encoder): set "
                             "[plugins.spark] model_path or VEENA_MODEL_PATH", 400,
                             synthesizer=SYNTHESIZER)
        with self._lock:
            if self._encoder is None:
                from veena.plugins.spark import checkpoint_folder
                from veena.plugins.spark.bicodec.speaker import BiCodecSpeakerEncoder

                folder = checkpoint_folder(spark.model_path) / "BiCodec"
                self._encoder = BiCodecSpeakerEncoder.from_pretrained(folder, self.config.device)
            return self._encoder

    def clone(self, audio: bytes) -> list[int]:
        """A clip's 32 global tokens; bad clips are a 400 with cloning's stable code."""
        from veena.plugins.spark.cloning import ClipLimits, CloneError, clone_global_tokens

        c = self.config
        limits = ClipLimits(max_bytes=c.max_clip_bytes, min_seconds=c.min_clip_seconds,
                            max_seconds=c.max_clip_seconds)
        encoder = self.encoder()
        try:
            return clone_global_tokens(encoder, audio, limits)
        except CloneError as exc:
            raise VeenaError(exc.code.value, str(exc), 400, param="file") from exc


def owner_of(principal: Principal | None) -> str:
    return principal.key_id if principal is not None and principal.key_id else LOCAL_OWNER


def to_speaker(rec: VoiceRecord) -> Speaker:
    """The Speaker a cloned voice is: its id as name, pinned global tokens for ``spark``."""
    return Speaker(name=rec.id, languages=rec.languages, gender=rec.gender,
                   description=rec.description,
                   synthesizers={SYNTHESIZER: {"task": "tts",
                                               "global_tokens": list(rec.global_tokens)}})


def voices(runtime: Runtime) -> Voices:
    state = runtime.state.get(NAME)
    if state is None:
        raise VeenaError("voices_unavailable", "cloned voices are off on this server: their "
                         "store is not open (see its start-up log)", 503)
    return state


def _open(runtime: Runtime) -> Voices | None:
    """The store the auth plugin's database holds; None (logged) when it cannot be used: the
    catalog is still served, cloned voices answer 503 ``voices_unavailable``."""
    cfg: Config = runtime.plugin_config(NAME) or Config()
    auth = runtime.plugin_config("auth")
    backend = chosen_backend(cfg.backend or getattr(auth, "backend", None) or "auto")
    dsn = os.environ.get("DATABASE_URL")
    if backend == "postgres" and not dsn:
        raise ConfigError("the voices plugin's postgres backend needs DATABASE_URL")
    if backend == "supabase" and not (os.environ.get("SUPABASE_URL")
                                      and os.environ.get("SUPABASE_SERVICE_KEY")):
        raise ConfigError("the voices plugin's supabase backend needs SUPABASE_URL and "
                          "SUPABASE_SERVICE_KEY")
    sqlite_path = cfg.sqlite_path or getattr(auth, "sqlite_path", None)
    try:
        store = open_store(backend, Path(sqlite_path) if sqlite_path else data_dir() / "veena.db",
                           dsn)
    except TableMissing:
        log.warning("cloned voices are off: the Supabase project has no veena_voices table; "
                    "create it once over SQL (docs/voices.md, Storage), then restart")
        return None
    except (OSError, TimeoutError, sqlite3.Error) as exc:
        log.warning("cloned voices are off: their store cannot be opened (%s: %s)",
                    type(exc).__name__, exc)
        return None
    except Exception as exc:  # asyncpg's and httpx's errors have no common base with OSError
        if type(exc).__module__.startswith(("asyncpg", "httpx", "postgrest")):
            log.warning("cloned voices are off: the %s store cannot be reached (%s)", backend,
                        exc)
            return None
        raise
    return Voices(cfg, store, runtime)


@hookimpl
async def veena_startup(runtime: Runtime) -> None:
    if NAME not in runtime.state:
        state = await asyncio.to_thread(_open, runtime)
        if state is not None:
            runtime.state[NAME] = state


@hookimpl
async def veena_shutdown(runtime: Runtime) -> None:
    state = runtime.state.pop(NAME, None)
    if state is not None:
        await asyncio.to_thread(state.store.close)


@hookimpl
def veena_resolve_speaker(name: str, principal: Principal | None,
                          runtime: Runtime) -> Speaker | None:
    candidate = name.strip().lower()
    if not VOICE_ID.match(candidate) or NAME not in runtime.state:
        return None
    rec = voices(runtime).store.get(candidate, owner_of(principal))
    if rec is None:
        return None  # the catalog answers: 400 unknown_speaker
    serving = runtime.config.stages.synthesizer
    if serving != SYNTHESIZER:
        raise VeenaError("voice_needs_spark", f"voice {rec.id!r} is a cloned voice: only the "
                         f"`{SYNTHESIZER}` synthesizer can speak with it, and this server "
                         f"speaks with `{serving}`", 400, param="speaker",
                         synthesizer=SYNTHESIZER)
    return to_speaker(rec)


@hookimpl
def veena_register_routes(runtime: Runtime):
    from veena.plugins.voices.routes import HANDLERS

    return HANDLERS
