"""The ``/v1/voices`` routes (Veena's and ElevenLabs' ``/v1/voices/add``)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, patch, post
from litestar.params import FromPath

from veena.platform.errors import VeenaError
from veena.platform.openapi import error_responses
from veena.platform.ids import new_id
from veena.platform.job import Principal
from veena.platform.pipeline import decode_body
from veena.platform.runtime import RequestInfo, Runtime
from veena.plugins.voices import NAME, SYNTHESIZER, Voices, owner_of, voices
from veena.plugins.voices.credits import charged
from veena.plugins.voices.store import VoiceRecord

log = logging.getLogger("veena.voices")
ERRORS = error_responses(401, 402, 403, 429, 503)
"""What every voice route can answer besides its own: the key checks and a store that is off."""

MAX_NAME = 100
MAX_DESCRIPTION = 1000


class CreateVoice(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/voices`` as JSON."""

    name: str
    audio_base64: str
    consent: bool = False
    description: str = ""
    languages: list[str] | str = []
    gender: str = ""


class UpdateVoice(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``PATCH /v1/voices/{id}``: only the fields sent change."""

    name: str | None = None
    description: str | None = None
    languages: list[str] | str | None = None
    gender: str | None = None


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def _admit(request: Request) -> tuple[Voices, Principal | None]:
    pipeline = request.app.state.pipeline
    principal = await pipeline.admit(RequestInfo(
        method=request.method, path=request.url.path, headers=dict(request.headers),
        client_host=request.client.host if request.client else None))
    return voices(_runtime(request)), principal


def voice_json(rec: VoiceRecord) -> dict[str, Any]:
    return {"id": rec.id, "voice_id": rec.id, "name": rec.name, "aliases": [],
            "languages": list(rec.languages), "gender": rec.gender,
            "description": rec.description, "category": "cloned", "synthesizer": SYNTHESIZER,
            "global_tokens": list(rec.global_tokens), "created_at": rec.created_at,
            "updated_at": rec.updated_at}


def _languages(value: list[str] | str | None) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else (value or [])
    return tuple(dict.fromkeys(s.strip().lower() for s in items if s.strip()))


def _text(value: Any, field: str, limit: int, required: bool = False) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if required and not text:
        raise VeenaError("invalid_request", f"`{field}` is required", 400, param=field)
    if len(text) > limit:
        raise VeenaError("invalid_request", f"`{field}` is longer than {limit} characters", 400,
                         param=field)
    return text


def _consent(value: Any, account: bool = False) -> str:
    """How the clip's speaker's consent is known: ``field`` (``consent=true``) or, where the
    operator allows it and the field is left out, ``account`` (the key owner's terms)."""
    if value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1", "yes")):
        return "field"
    if account and (value is None or (isinstance(value, str) and not value.strip())):
        return "account"
    raise VeenaError("consent_required", "`consent` must be true: the clip's speaker agreed to "
                     "have their voice cloned", 400, param="consent")


async def _upload(form: Any, *fields: str) -> bytes:
    for field in fields:
        item = form.get(field)
        if item is not None and hasattr(item, "read"):
            return await item.read()
    raise VeenaError("invalid_request", f"multipart field `{fields[0]}` (the clip) is required",
                     400, param=fields[0])


async def _create(request: Request, state: Voices, principal: Principal | None, *, name: str,
                  audio: bytes, description: str, languages: tuple[str, ...],
                  gender: str, consent: str) -> VoiceRecord:
    async def make() -> VoiceRecord:
        tokens = await asyncio.to_thread(state.clone, audio)
        now = time.time()
        rec = VoiceRecord(id=f"vc_{new_id()[:20]}", owner=owner_of(principal), name=name,
                          description=description, languages=languages, gender=gender,
                          global_tokens=tuple(tokens), created_at=now, updated_at=now)
        await asyncio.to_thread(state.store.create, rec)
        log.info("voices.created", extra={"voice_id": rec.id, "owner": rec.owner,
                                          "consent": consent, "route": request.url.path})
        return rec

    request_id = request.scope.get("state", {}).get("request_id") or new_id()
    return await charged(_runtime(request), principal, state.config.clone_credits, request_id,
                         make, lambda rec: rec.id)


@post("/v1/voices", status_code=201, summary="Clone a voice from a reference clip",
      responses=ERRORS)
async def create_voice(request: Request) -> Response[dict[str, Any]]:
    state, principal = await _admit(request)
    if request.content_type[0] == "multipart/form-data":
        form = await request.form()
        consent = _consent(form.get("consent"))
        audio = await _upload(form, "file")
        fields = {k: form.get(k) for k in ("name", "description", "languages", "gender")}
    else:
        body = decode_body(await request.body(), CreateVoice)
        consent = _consent(body.consent)
        try:
            audio = base64.b64decode(body.audio_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise VeenaError("invalid_request", "`audio_base64` is not valid base64", 400,
                             param="audio_base64") from exc
        fields = {"name": body.name, "description": body.description,
                  "languages": body.languages, "gender": body.gender}
    rec = await _create(request, state, principal,
                        name=_text(fields["name"], "name", MAX_NAME, True), audio=audio,
                        description=_text(fields["description"], "description", MAX_DESCRIPTION),
                        languages=_languages(fields["languages"]),
                        gender=_text(fields["gender"], "gender", 32), consent=consent)
    return Response(voice_json(rec), status_code=201)


@post("/v1/voices/add", status_code=200, summary="ElevenLabs-compatible voice cloning",
      responses=ERRORS)
async def elevenlabs_add(request: Request) -> dict[str, Any]:
    state, principal = await _admit(request)
    if request.content_type[0] != "multipart/form-data":
        raise VeenaError("invalid_request", "send multipart/form-data with `name` and `files`",
                         400)
    form = await request.form()
    consent = _consent(form.get("consent"), account=state.config.add_consent == "account")
    audio = await _upload(form, "files", "file")
    rec = await _create(request, state, principal,
                        name=_text(form.get("name"), "name", MAX_NAME, True), audio=audio,
                        description=_text(form.get("description"), "description",
                                          MAX_DESCRIPTION),
                        languages=_languages(form.get("languages")),
                        gender=_text(form.get("gender"), "gender", 32), consent=consent)
    return {"voice_id": rec.id, "requires_verification": False}


def _catalog(runtime: Runtime) -> list[dict[str, Any]]:
    return [{"name": s.name, "aliases": list(s.aliases), "languages": list(s.languages),
             "gender": s.gender, "description": s.description, "id": s.name,
             "category": "catalog"} for s in runtime.speakers]


@get("/v1/voices", summary="The catalog's voices and the caller's own",
     responses=ERRORS)
async def list_voices(request: Request) -> list[dict[str, Any]]:
    """The catalog is public (the try-it page reads it without a key, before start-up too);
    the caller's own voices come after it when the caller is admitted."""
    catalog = _catalog(_runtime(request))
    if NAME not in _runtime(request).state:
        return catalog
    try:
        state, principal = await _admit(request)
    except VeenaError as exc:
        if exc.status == 401:
            return catalog
        raise
    own = await asyncio.to_thread(state.store.list, owner_of(principal))
    return catalog + [voice_json(r) for r in own]


def _not_found(voice_id: str) -> VeenaError:
    return VeenaError("voice_not_found", f"no voice {voice_id!r} of yours", 404,
                      param="voice_id")


@get("/v1/voices/{voice_id:str}", summary="One voice",
     responses=ERRORS)
async def get_voice(request: Request, voice_id: FromPath[str]) -> dict[str, Any]:
    state, principal = await _admit(request)
    rec = await asyncio.to_thread(state.store.get, voice_id, owner_of(principal))
    if rec is not None:
        return voice_json(rec)
    catalog = next((v for v in _catalog(_runtime(request)) if v["name"] == voice_id), None)
    if catalog is None:
        raise _not_found(voice_id)
    return catalog


@patch("/v1/voices/{voice_id:str}", summary="Rename or describe one of your voices",
       responses=ERRORS)
async def update_voice(request: Request, voice_id: FromPath[str]) -> dict[str, Any]:
    state, principal = await _admit(request)
    body = decode_body(await request.body(), UpdateVoice)
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = _text(body.name, "name", MAX_NAME, True)
    if body.description is not None:
        changes["description"] = _text(body.description, "description", MAX_DESCRIPTION)
    if body.languages is not None:
        changes["languages"] = _languages(body.languages)
    if body.gender is not None:
        changes["gender"] = _text(body.gender, "gender", 32)
    rec = await asyncio.to_thread(state.store.update, voice_id, owner_of(principal), changes)
    if rec is None:
        raise _not_found(voice_id)
    return voice_json(rec)


@delete("/v1/voices/{voice_id:str}", status_code=204, summary="Delete one of your voices",
        responses=ERRORS)
async def delete_voice(request: Request, voice_id: FromPath[str]) -> None:
    state, principal = await _admit(request)
    if not await asyncio.to_thread(state.store.delete, voice_id, owner_of(principal)):
        raise _not_found(voice_id)


HANDLERS = [create_voice, elevenlabs_add, list_voices, get_voice, update_voice, delete_voice]
