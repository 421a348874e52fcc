"""Cloned voices over HTTP on real servers on loopback (``plugins/voices``): clone from eSpeak NG
speech made by our own server, list, synthesize with it on the tiny random Veena3 checkpoint
(HTTP, OpenAI, WebSocket), rename, delete; every bad clip; the eSpeak server refusing a cloned
voice with a 400 naming ``spark``; ownership with two keys and two server processes on one
PostgreSQL; cloning's credits; the ``veena_resolve_speaker`` hook."""

from __future__ import annotations

import asyncio
import base64
import io
import math
import struct
import wave

import httpx
import pytest

from tests.conftest import Server
from tests.integration.test_websocket import speak
from veena.platform.db.postgres import PostgresDatabase
from veena.plugins.auth.keys import new_key

pytest.importorskip("torch")

SPEECH = "Namaste. This is a short reference clip for cloning a voice, spoken by eSpeak."


class SparkServer(Server):
    def _wait(self, timeout: float = 180.0) -> None:  # torch + transformers import, model load
        super()._wait(timeout)


def wav_bytes(samples: list[float], rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes(struct.pack(f"<{len(samples)}h", *(int(s * 32767) for s in samples)))
    return out.getvalue()


def tone(seconds: float, rate: int = 8000, amp: float = 0.5) -> bytes:
    return wav_bytes([amp * math.sin(2 * math.pi * 220 * i / rate)
                      for i in range(int(seconds * rate))], rate)


@pytest.fixture(scope="module")
def clip(server) -> bytes:
    """eSpeak NG speech as WAV, from the plain server's own /v1/tts/generate."""
    resp = httpx.post(server.url + "/v1/tts/generate",
                      json={"text": SPEECH, "format": "wav", "stream": False}, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.content


def clone(srv, audio: bytes, key: str | None = None, **fields):
    data = {"name": "Asha", "consent": "true", "languages": "hi, en", "gender": "female",
            "description": "my voice", **fields}
    return httpx.post(srv.url + "/v1/voices", data=data, files={"file": ("clip.wav", audio)},
                      headers=_auth(key), timeout=120)


def _auth(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key else {}


def error_code(resp) -> tuple[int, str]:
    return resp.status_code, resp.json()["error"]["code"]


@pytest.fixture(scope="module")
def spark(tmp_path_factory, ckpt):
    tmp = tmp_path_factory.mktemp("voices-spark")
    config = f"""
[stages]
synthesizer = "spark"

[plugins.spark]
model_path = "{ckpt}"
threads = 1

[plugins.auth]
sqlite_path = "{tmp / 'shared.db'}"

[plugins.voices]
max_clip_bytes = 400000
max_clip_seconds = 20
"""
    srv = SparkServer(config, tmp)
    yield srv
    srv.stop()


def test_clone_list_speak_rename_delete(spark, clip):
    resp = clone(spark, clip)
    assert resp.status_code == 201, resp.text
    voice = resp.json()
    vid = voice["id"]
    assert voice["name"] == "Asha" and voice["languages"] == ["hi", "en"]
    assert voice["gender"] == "female" and voice["synthesizer"] == "spark"
    tokens = voice["global_tokens"]
    assert len(tokens) == 32 and all(0 <= t < 4096 for t in tokens)

    listed = httpx.get(spark.url + "/v1/voices", timeout=10).json()
    catalog = [v for v in listed if v["category"] == "catalog"]
    assert {"kavya"} <= {v["name"] for v in catalog}
    assert all(set(v) >= {"name", "aliases", "languages", "gender", "description"} for v in listed)
    assert [v["id"] for v in listed if v["category"] == "cloned"] == [vid]
    assert httpx.get(f"{spark.url}/v1/voices/{vid}", timeout=10).json()["global_tokens"] == tokens

    # The voice speaks, with its global tokens pinned, on the native and the OpenAI route.
    resp = httpx.post(spark.url + "/v1/tts/generate", json={
        "text": "Hello there.", "speaker": vid, "format": "wav", "stream": False,
        "max_tokens": 20, "seed": 1}, timeout=120)
    assert resp.status_code == 200, resp.text
    assert resp.content[:4] == b"RIFF" and len(resp.content) > 44
    rid = resp.headers["x-request-id"]
    chunks = spark.events("spark.chunk_generated", rid)
    assert chunks and all(c["global_tokens_pinned"] for c in chunks)
    resp = httpx.post(spark.url + "/v1/audio/speech", json={
        "model": "veena", "input": "Hi.", "voice": vid, "response_format": "pcm"}, timeout=120)
    assert resp.status_code == 200 and resp.content, resp.text
    got = asyncio.run(speak(spark, "Hi there.", voice=vid, format="pcm", max_tokens=20, seed=1))
    assert got.ready["voice"] == vid and any(got.audio.values()), got.events
    resp = httpx.post(f"{spark.url}/v1/text-to-speech/{vid}", params={"output_format": "pcm_16000"},
                      json={"text": "Hi.", "seed": 1}, timeout=120)  # ElevenLabs' route
    assert resp.status_code == 200 and resp.content, resp.text
    assert resp.headers["x-voice"] == vid

    resp = httpx.patch(f"{spark.url}/v1/voices/{vid}",
                       json={"name": "Asha 2", "languages": "te"}, timeout=10)
    assert resp.status_code == 200 and resp.json()["name"] == "Asha 2"
    assert resp.json()["languages"] == ["te"] and resp.json()["global_tokens"] == tokens

    assert httpx.delete(f"{spark.url}/v1/voices/{vid}", timeout=10).status_code == 204
    for call in (httpx.get, httpx.delete):
        assert error_code(call(f"{spark.url}/v1/voices/{vid}", timeout=10)) == \
            (404, "voice_not_found")
    resp = httpx.post(spark.url + "/v1/tts/generate",
                      json={"text": "Hello.", "speaker": vid, "stream": False}, timeout=60)
    assert error_code(resp) == (400, "unknown_speaker")
    assert vid not in {v["id"] for v in httpx.get(spark.url + "/v1/voices", timeout=10).json()}


def test_json_and_elevenlabs_routes_clone_the_same_voice(spark, clip):
    resp = httpx.post(spark.url + "/v1/voices", json={
        "name": "Json", "consent": True, "audio_base64": base64.b64encode(clip).decode()},
        timeout=120)
    assert resp.status_code == 201, resp.text
    by_json = resp.json()
    resp = httpx.post(spark.url + "/v1/voices/add", data={"name": "Eleven", "consent": "true"},
                      files={"files": ("clip.wav", clip)}, timeout=120)
    assert resp.status_code == 200, resp.text
    eleven = httpx.get(f"{spark.url}/v1/voices/{resp.json()['voice_id']}", timeout=10).json()
    assert eleven["name"] == "Eleven"
    assert eleven["global_tokens"] == by_json["global_tokens"]  # same clip, same timbre
    for vid in (by_json["id"], eleven["id"]):
        assert httpx.delete(f"{spark.url}/v1/voices/{vid}", timeout=10).status_code == 204
    # ElevenLabs clients send no consent field: by default that is refused here too.
    resp = httpx.post(spark.url + "/v1/voices/add", data={"name": "Eleven"},
                      files={"files": ("clip.wav", clip)}, timeout=120)
    assert error_code(resp) == (400, "consent_required")


def test_elevenlabs_sdk_clones_and_speaks_where_the_operator_takes_consent_from_accounts(
        ckpt, clip, tmp_path):
    """``add_consent = "account"``: the official SDK's ``voices.ivc.create`` (no consent field)
    clones, its ``text_to_speech.convert`` speaks with the voice; ``consent=false`` is still
    refused, and the log says how consent was known, per voice."""
    from elevenlabs import ElevenLabs
    from elevenlabs.core.api_error import ApiError

    srv = SparkServer(f'[stages]\nsynthesizer = "spark"\n[plugins.spark]\nmodel_path = "{ckpt}"\n'
                      'threads = 1\n[plugins.voices]\nadd_consent = "account"\n', tmp_path)
    try:
        client = ElevenLabs(api_key="unused", base_url=srv.url)
        made = client.voices.ivc.create(name="Sdk voice", files=[("clip.wav", clip)])
        vid = made.voice_id
        assert httpx.get(f"{srv.url}/v1/voices/{vid}", timeout=10).json()["name"] == "Sdk voice"
        audio = b"".join(client.text_to_speech.convert(voice_id=vid, text="Hi.",
                                                       output_format="pcm_16000"))
        assert len(audio) > 0 and len(audio) % 2 == 0
        with pytest.raises(ApiError) as refused:
            client.voices.ivc.create(name="x", files=[("clip.wav", clip)],
                                     request_options={"additional_body_parameters":
                                                      {"consent": "false"}})
        assert refused.value.status_code == 400
        resp = httpx.post(srv.url + "/v1/voices", data={"name": "x"},
                          files={"file": ("clip.wav", clip)}, timeout=60)
        assert error_code(resp) == (400, "consent_required")  # POST /v1/voices always asks
        created = [e for e in srv.wait_event("voices.created")]
        assert [(e["voice_id"], e["consent"]) for e in created] == [(vid, "account")]
    finally:
        srv.stop()


@pytest.mark.parametrize("audio, code", [
    (wav_bytes([0.0] * 16000 * 3), "clip_silent"),
    (tone(0.5), "clip_too_short"),
    (tone(25.0, rate=4000), "clip_too_long"),
    (b"this is not audio at all " * 200, "clip_undecodable"),
    (b"", "clip_undecodable"),
    (b"\x00" * 500_000, "clip_too_large"),
])
def test_bad_clips_get_a_stable_400(spark, audio, code):
    resp = clone(spark, audio)
    assert error_code(resp) == (400, code), resp.text
    assert resp.json()["error"]["param"] == "file"


def test_requests_missing_consent_or_a_name_are_refused(spark, clip):
    assert error_code(clone(spark, clip, consent="false")) == (400, "consent_required")
    assert error_code(clone(spark, clip, name=" ")) == (400, "invalid_request")
    resp = httpx.post(spark.url + "/v1/voices", json={"name": "x", "consent": True,
                                                      "audio_base64": "***"}, timeout=10)
    assert error_code(resp) == (400, "invalid_request")


def test_espeak_server_on_the_same_store_refuses_to_speak_a_cloned_voice(spark, clip, tmp_path):
    vid = clone(spark, clip).json()["id"]
    srv = Server(f'[plugins.auth]\nsqlite_path = "{spark.data_dir.parent / "shared.db"}"\n',
                 tmp_path)
    try:
        assert httpx.get(f"{srv.url}/v1/voices/{vid}", timeout=10).status_code == 200
        resp = httpx.post(srv.url + "/v1/tts/generate",
                          json={"text": "Hello.", "speaker": vid, "stream": False}, timeout=30)
        assert error_code(resp) == (400, "voice_needs_spark")
        assert "spark" in resp.json()["error"]["message"]
        # No Veena3 checkpoint here: cloning names what it needs.
        resp = clone(srv, clip)
        assert error_code(resp) == (400, "cloning_unavailable") and "spark" in resp.text
    finally:
        srv.stop()


# --- PostgreSQL: two processes, two keys ---------------------------------------------------------

def on_db(dsn: str, fn):
    async def main():
        db = PostgresDatabase(dsn)
        try:
            await db.migrate()
            return await fn(db)
        finally:
            await db.close()
    return asyncio.run(main())


def make_key(dsn: str, owner: str, **kw) -> tuple[str, str]:
    secret, key = new_key(owner, **kw)
    on_db(dsn, lambda db: db.create_key(key))
    return secret, key.id


def test_two_processes_on_postgres_share_voices_per_owner(pg_dsn, ckpt, clip, start_server):
    alice, _ = make_key(pg_dsn, "acme")
    bob, _ = make_key(pg_dsn, "acme")  # same owner name, another key: voices are per key
    config = f'[plugins.spark]\nmodel_path = "{ckpt}"\nthreads = 1\n'
    env = {"DATABASE_URL": pg_dsn}
    one, two = start_server(config, env=env), start_server(config, env=env)

    resp = clone(one, clip, key=alice)
    assert resp.status_code == 201, resp.text
    vid = resp.json()["id"]
    # The other process sees it at once; the other key never does.
    assert httpx.get(f"{two.url}/v1/voices/{vid}", headers=_auth(alice), timeout=10).json()[
        "name"] == "Asha"
    own = [v["id"] for v in httpx.get(f"{two.url}/v1/voices", headers=_auth(alice),
                                      timeout=10).json() if v["category"] == "cloned"]
    assert own == [vid]
    assert all(v["category"] == "catalog" for v in
               httpx.get(f"{two.url}/v1/voices", headers=_auth(bob), timeout=10).json())
    assert all(v["category"] == "catalog" for v in
               httpx.get(f"{two.url}/v1/voices", timeout=10).json())  # no key: the catalog
    for call in (httpx.get, httpx.delete):
        assert error_code(call(f"{two.url}/v1/voices/{vid}", headers=_auth(bob),
                               timeout=10)) == (404, "voice_not_found")
    assert error_code(httpx.patch(f"{one.url}/v1/voices/{vid}", json={"name": "mine"},
                                  headers=_auth(bob), timeout=10)) == (404, "voice_not_found")
    resp = httpx.post(two.url + "/v1/tts/generate", headers=_auth(bob),
                      json={"text": "Hello.", "speaker": vid, "stream": False}, timeout=30)
    assert error_code(resp) == (400, "unknown_speaker")
    # These servers speak with eSpeak NG: the owner's voice is a clear 400 naming spark.
    resp = httpx.post(two.url + "/v1/tts/generate", headers=_auth(alice),
                      json={"text": "Hello.", "speaker": vid, "stream": False}, timeout=30)
    assert error_code(resp) == (400, "voice_needs_spark")
    assert clone(two, clip).status_code == 401  # cloning needs a key once keys exist

    assert httpx.delete(f"{two.url}/v1/voices/{vid}", headers=_auth(alice),
                        timeout=10).status_code == 204
    assert error_code(httpx.get(f"{one.url}/v1/voices/{vid}", headers=_auth(alice),
                                timeout=10)) == (404, "voice_not_found")


def test_cloning_costs_the_configured_credits(pg_dsn, ckpt, clip, start_server):
    rich, rich_id = make_key(pg_dsn, "acme", credits=10)
    poor, poor_id = make_key(pg_dsn, "acme", credits=2)
    srv = start_server(f'[plugins.spark]\nmodel_path = "{ckpt}"\nthreads = 1\n'
                       "[plugins.voices]\nclone_credits = 3\n", env={"DATABASE_URL": pg_dsn})

    def balance(key_id):
        return on_db(pg_dsn, lambda db: db.get_key(key_id)).credits

    resp = clone(srv, clip, key=rich)
    assert resp.status_code == 201, resp.text
    assert balance(rich_id) == 7
    usage = on_db(pg_dsn, lambda db: db.usage(rich_id))
    assert [(u.format, u.speaker, u.credits) for u in usage] == [("clone", resp.json()["id"], 3)]
    assert error_code(clone(srv, tone(0.5), key=rich)) == (400, "clip_too_short")
    assert balance(rich_id) == 7  # a clip that made no voice costs nothing
    resp = clone(srv, clip, key=poor)
    assert error_code(resp) == (402, "insufficient_credits")
    assert resp.json()["error"]["required"] == 3
    assert balance(poor_id) == 2


# --- the selection hook ---------------------------------------------------------------------------

def test_veena_resolve_speaker_comes_before_the_catalog(tmp_path, monkeypatch):
    """A plugin's ``veena_resolve_speaker`` sees the name and the caller first; None falls
    through to the catalog; raising rejects the request."""
    from litestar.testing import TestClient

    from veena.platform.app import create_app
    from veena.platform.config import parse_config
    from veena.platform.errors import VeenaError
    from veena.platform.hookspecs import hookimpl
    from veena.speakers import Speaker

    monkeypatch.setenv("VEENA_DATA_DIR", str(tmp_path))
    seen: list[tuple[str, object]] = []

    class Resolver:
        @hookimpl
        def veena_resolve_speaker(self, name, principal, runtime):
            seen.append((name, principal))
            if name == "refused":
                raise VeenaError("refused_voice", "no", 400)
            return Speaker(name="mine", synthesizers={"espeak": {"voice": "en"}}) \
                if name == "kavya" else None

    app = create_app(parse_config({}), plugins=[("resolver", Resolver())])
    with TestClient(app) as client:
        def say(speaker):
            return client.post("/v1/tts/generate", json={"text": "Hello.", "speaker": speaker,
                                                         "stream": False})
        assert say("kavya").headers["x-voice"] == "mine"  # shadows the catalog's kavya
        assert say("alloy").headers["x-voice"] == "kavya"  # None: the catalog answers
        assert error_code(say("refused")) == (400, "refused_voice")
        assert error_code(say("nobody")) == (400, "unknown_speaker")
    assert [name for name, _ in seen] == ["kavya", "alloy", "refused", "nobody"]
    assert all(p is None for _, p in seen)  # open access: anonymous


def test_a_store_that_cannot_be_reached_turns_cloned_voices_off_not_the_server(start_server,
                                                                               clip):
    from tests.support.services import free_port

    srv = start_server(env={"DATABASE_URL": f"postgresql://veena@127.0.0.1:{free_port()}/none"})
    assert "cloned voices are off" in srv.log.read_text()
    resp = httpx.post(srv.url + "/v1/voices", data={"name": "x", "consent": "true"},
                      files={"file": ("clip.wav", clip)}, timeout=30)
    assert resp.status_code == 503, resp.text
    listed = httpx.get(srv.url + "/v1/voices", timeout=10)
    assert listed.status_code == 200 and {"kavya"} <= {v["name"] for v in listed.json()}


def test_voices_on_supabase_through_postgrest(pg_dsn, ckpt, clip, tmp_path):
    """With only SUPABASE_URL + SUPABASE_SERVICE_KEY (the auth plugin's Supabase store), voices
    live in the project's ``veena_voices`` table over PostgREST (the look-alike on a real
    PostgreSQL): clone, list, get, rename, speak, delete; the rows are in the database. A
    project without the table turns cloned voices off with a warning naming it."""
    from tests.support.postgrest import FakePostgrest
    from veena.plugins.voices.store import PostgresVoiceStore

    fake = FakePostgrest(pg_dsn)
    env = {"SUPABASE_URL": fake.url, "SUPABASE_SERVICE_KEY": fake.service_key}
    config = (f'[stages]\nsynthesizer = "spark"\n[plugins.spark]\nmodel_path = "{ckpt}"\n'
              'threads = 1\n[plugins.auth]\nmode = "off"\n[plugins.storage]\nbackend = "sqlite"\n')
    try:
        srv = SparkServer(config, tmp_path, env=env)  # no table yet
        try:
            assert "no veena_voices table" in srv.log.read_text()
            assert error_code(clone(srv, clip)) == (503, "voices_unavailable")
        finally:
            srv.stop()
        sql = PostgresVoiceStore(pg_dsn)
        sql.open()  # creates the table, as an operator does once over SQL
        srv = SparkServer(config, tmp_path, env=env)
        try:
            resp = clone(srv, clip)
            assert resp.status_code == 201, resp.text
            vid = resp.json()["id"]
            assert [r.id for r in sql.list("local")] == [vid]  # in the project's database
            assert sql.get(vid, "local").global_tokens == tuple(resp.json()["global_tokens"])
            assert [v["id"] for v in httpx.get(srv.url + "/v1/voices", timeout=10).json()
                    if v["category"] == "cloned"] == [vid]
            resp = httpx.patch(f"{srv.url}/v1/voices/{vid}", json={"name": "Renamed",
                                                                   "languages": "te"}, timeout=10)
            assert resp.json()["name"] == "Renamed" and sql.get(vid, "local").languages == ("te",)
            resp = httpx.post(srv.url + "/v1/tts/generate", json={
                "text": "Hello.", "speaker": vid, "stream": False, "max_tokens": 20, "seed": 1},
                timeout=120)
            assert resp.status_code == 200 and resp.headers["x-voice"] == vid, resp.text
            assert httpx.delete(f"{srv.url}/v1/voices/{vid}", timeout=10).status_code == 204
            assert error_code(httpx.get(f"{srv.url}/v1/voices/{vid}", timeout=10)) == \
                (404, "voice_not_found")
            assert sql.list("local") == []
            methods = {r["method"] for r in fake.requests if r["path"].endswith("/veena_voices")}
            assert methods >= {"GET", "POST", "PATCH", "DELETE"}
            assert all(r["headers"].get("apikey") == fake.service_key for r in fake.requests)
        finally:
            srv.stop()
            sql.close()
    finally:
        fake.stop()


def test_per_key_rate_limits_apply_to_the_voice_routes(pg_dsn, clip, start_server):
    """Voice routes are admitted like synthesis: a key's own requests-per-minute counts them."""
    slow, _ = make_key(pg_dsn, "acme", rate_per_minute=2)
    srv = start_server(env={"DATABASE_URL": pg_dsn})
    answers = [httpx.get(srv.url + "/v1/voices/vc_00000000000000000000", headers=_auth(slow),
                         timeout=10) for _ in range(3)]
    assert [a.status_code for a in answers[:2]] == [404, 404]
    assert error_code(answers[2]) == (429, "rate_limited") and "retry-after" in answers[2].headers
    assert error_code(clone(srv, clip, key=slow)) == (429, "rate_limited")
