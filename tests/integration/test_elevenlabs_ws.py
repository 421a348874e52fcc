"""ElevenLabs' WebSockets, ``/v1/text-to-speech/{voice_id}/stream-input`` and
``multi-stream-input``, against a real ``veena serve`` on loopback (embedded eSpeak NG voice),
driven by a real WebSocket client (the ``websockets`` package) and by the official ``elevenlabs``
SDK's realtime client."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import numpy as np
import pytest
import websockets

from tests.support.decode import decode

TEXT = ("Hello there, this is a streaming test. The second sentence follows the first one. "
        "And here is a third, a little longer than the others, to end it.")
LONG = "Talking for a long while now, on and on without a pause. " * 40


@dataclass
class Got:
    """Everything one socket received, by context (``default`` on ``stream-input``)."""

    audio: dict[str, bytearray] = field(default_factory=dict)
    alignment: dict[str, list[dict]] = field(default_factory=dict)
    normalized: dict[str, list[dict]] = field(default_factory=dict)
    messages: list[dict] = field(default_factory=list)
    finals: list[str] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    first_audio: float | None = None
    close_code: int | None = None
    close_reason: str = ""

    def chars(self, cid: str = "default") -> str:
        return "".join("".join(a["chars"]) for a in self.alignment.get(cid, []))


def url(srv, voice: str = "kavya", *, multi: bool = False, **params) -> str:
    path = "multi-stream-input" if multi else "stream-input"
    query = f"?{urlencode(params)}" if params else ""
    return srv.url.replace("http://", "ws://") + f"/v1/text-to-speech/{voice}/{path}{query}"


async def read(ws, got: Got, *, until_final: set[str] | None = None,
               timeout: float = 60) -> Got:
    """Reads server messages until the socket closes (or every context in ``until_final``
    sent ``isFinal``)."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            absorb(got, json.loads(await asyncio.wait_for(ws.recv(),
                                                          deadline - time.monotonic())))
            if until_final is not None and until_final <= set(got.finals):
                return got
    except websockets.ConnectionClosed as exc:
        got.close_code = exc.rcvd.code if exc.rcvd else None
        got.close_reason = exc.rcvd.reason if exc.rcvd else ""
    return got


def absorb(got: Got, msg: dict) -> None:
    """Files one server message under its context."""
    got.messages.append({k: v for k, v in msg.items() if k != "audio"})
    cid = msg.get("contextId", "default")
    if "message" in msg:
        got.errors.append(msg)
    elif msg.get("isFinal"):
        got.finals.append(cid)
    else:
        if msg.get("audio"):
            got.audio.setdefault(cid, bytearray()).extend(base64.b64decode(msg["audio"]))
            got.first_audio = got.first_audio or time.perf_counter()
        if msg.get("alignment"):
            got.alignment.setdefault(cid, []).append(msg["alignment"])
            got.normalized.setdefault(cid, []).append(msg["normalizedAlignment"])


async def send(ws, **msg) -> None:
    await ws.send(json.dumps(msg))


async def speak(srv, text: str = TEXT, *, piece: int = 4, voice_settings: dict | None = None,
                headers: dict | None = None, **params) -> Got:
    """``stream-input``: the initial message, ``text`` a few characters at a time, then
    ``{"text": ""}``."""
    async with websockets.connect(url(srv, **params), additional_headers=headers,
                                  max_size=None) as ws:
        await send(ws, text=" ", voice_settings=voice_settings or {"stability": 0.5},
                   generation_config={"chunk_length_schedule": [120, 160, 250, 290]})
        for i in range(0, len(text), piece):
            await send(ws, text=text[i:i + piece], try_trigger_generation=False)
        await send(ws, text="")
        return await read(ws, Got())


def spans(pieces: list[dict]) -> list[float]:
    """Seconds each alignment piece covers (its last character's end): ElevenLabs' times are
    relative to the piece, so a client adds these up to place the next piece."""
    return [(p["charStartTimesMs"][-1] + p["charDurationsMs"][-1]) / 1000 for p in pieces
            if p["chars"]]


def check_alignment(pieces: list[dict]) -> None:
    for p in pieces:
        assert len(p["chars"]) == len(p["charStartTimesMs"]) == len(p["charDurationsMs"])
        starts = p["charStartTimesMs"]
        assert starts == sorted(starts) and starts[0] >= 0, starts
        assert min(p["charDurationsMs"]) >= 0


def wait_idle(srv, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.health()["active_streams"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"streams still active: {srv.health()}")


def test_first_audio_comes_before_the_closing_message_and_pcm_decodes_to_the_end(server):
    async def main() -> tuple[Got, float]:
        async with websockets.connect(url(server, output_format="pcm_16000"),
                                      max_size=None) as ws:
            await send(ws, text=" ", voice_settings={"speed": 1.0})
            got = Got()
            reader = asyncio.create_task(read(ws, got))
            for i in range(0, len(TEXT), 3):
                await send(ws, text=TEXT[i:i + 3])
                await asyncio.sleep(0.01)
            closing = time.perf_counter()
            await send(ws, text="")
            return await reader, closing

    got, closing = asyncio.run(main())
    assert got.first_audio is not None and got.first_audio < closing
    assert got.finals == ["default"] and got.close_code == 1000 and not got.errors
    pcm = bytes(got.audio["default"])
    assert len(pcm) % 2 == 0
    samples, rate = decode(pcm, "pcm", 16000)
    seconds = len(samples) / rate
    assert seconds > 4
    # every sample is accounted for by the alignment: the pieces' spans add up to the audio
    assert abs(sum(spans(got.alignment["default"])) - seconds) < 0.02, (spans, seconds)
    assert np.abs(samples[-200:]).max() < 0.5  # ends on the voice's own tail, not cut noise


@pytest.mark.parametrize("fmt,codec,rate", [("mp3_44100_128", "mp3", 44100),
                                            ("ulaw_8000", "mulaw", 8000),
                                            ("opus_48000_64", "opus", 48000)])
def test_compressed_and_telephony_formats_decode_as_one_stream(server, fmt, codec, rate):
    got = asyncio.run(speak(server, output_format=fmt))
    assert got.close_code == 1000 and got.finals == ["default"], got.errors
    samples, decoded = decode(bytes(got.audio["default"]), codec, rate)
    assert decoded == rate
    spoken = sum(spans(got.alignment["default"]))
    assert spoken > 4 and abs(len(samples) / rate - spoken) < 0.15, (len(samples) / rate, spoken)


def test_default_format_is_mp3_44100(server):
    got = asyncio.run(speak(server, "Just one short sentence."))
    samples, rate = decode(bytes(got.audio["default"]), "mp3")
    assert rate == 44100 and len(samples) / rate > 0.8


def test_alignment_is_monotonic_and_covers_every_character(server):
    got = asyncio.run(speak(server, TEXT, piece=5, output_format="pcm_24000"))
    pieces = got.alignment["default"]
    assert len(pieces) >= 3  # one per sentence or clause
    check_alignment(pieces)
    check_alignment(got.normalized["default"])
    assert got.chars().strip() == TEXT.strip()
    # words take time, the spaces between them none; a piece starts where its audio starts
    first = pieces[0]
    word = [d for c, d in zip(first["chars"], first["charDurationsMs"]) if c.isalpha()]
    assert min(word) > 0 and first["charStartTimesMs"][0] == 0
    normalized = "".join("".join(p["chars"]) for p in got.normalized["default"])
    assert "second sentence" in normalized.lower()


def test_numbers_are_normalized_in_normalized_alignment_only(server):
    got = asyncio.run(speak(server, "I have 3 apples.", output_format="pcm_16000"))
    assert got.chars().strip() == "I have 3 apples."
    normalized = "".join("".join(p["chars"]) for p in got.normalized["default"])
    assert "three" in normalized


def test_sync_alignment_sends_each_audio_chunk_with_its_timing(server):
    got = asyncio.run(speak(server, output_format="pcm_16000", sync_alignment="true"))
    audio = [m for m in got.messages if "isFinal" in m and not m["isFinal"]]
    timed = [m for m in audio if m["alignment"]]
    assert len(timed) >= 3 and len(audio) - len(timed) <= 1  # at most the encoder's tail
    assert got.chars().strip() == TEXT.strip()


def test_flush_speaks_a_partial_sentence_at_once(server):
    async def main() -> tuple[Got, float]:
        async with websockets.connect(url(server, output_format="pcm_16000")) as ws:
            await send(ws, text=" ")
            t0 = time.perf_counter()
            await send(ws, text="Hello there frie", flush=True)
            got = Got()
            while not got.alignment:
                absorb(got, json.loads(await asyncio.wait_for(ws.recv(), 10)))
            took = time.perf_counter() - t0
            await send(ws, text="nd.")
            await send(ws, text="")
            await read(ws, got)
            return got, took

    got, took = asyncio.run(main())
    # the max-wait timer would speak whole words only ("Hello there"), and only after 0.4 s
    assert "".join(got.alignment["default"][0]["chars"]).strip() == "Hello there frie"
    assert took < 2
    assert got.close_code == 1000


def test_auto_mode_speaks_each_message_at_once(server):
    async def main() -> Got:
        async with websockets.connect(url(server, output_format="pcm_16000",
                                          auto_mode="true")) as ws:
            await send(ws, text=" ")
            await send(ws, text="Hello there friend")  # no boundary, no flush
            got = Got()
            while not got.alignment:
                absorb(got, json.loads(await asyncio.wait_for(ws.recv(), 10)))
            await send(ws, text="")
            return await read(ws, got)

    got = asyncio.run(main())
    # without auto_mode the max-wait timer would speak "Hello there" and keep "friend" back
    assert "".join(got.alignment["default"][0]["chars"]).strip() == "Hello there friend"


def test_voice_settings_speed_changes_the_duration(server):
    slow, fast = (asyncio.run(speak(server, "A sentence to time at two speeds.",
                                    output_format="pcm_16000", voice_settings={"speed": s}))
                  for s in (0.8, 1.25))
    assert len(fast.audio["default"]) < 0.85 * len(slow.audio["default"])


def test_multi_stream_contexts_interleave_and_close_context_stops_one(server):
    async def main() -> Got:
        async with websockets.connect(url(server, multi=True, output_format="pcm_16000"),
                                      max_size=None) as ws:
            await send(ws, text=" ", context_id="long", voice_settings={"speed": 1.0})
            await send(ws, text=" ", context_id="short")
            for i in range(0, 400, 8):  # interleaved, a few characters at a time
                await send(ws, text=LONG[i:i + 8], context_id="long")
                await send(ws, text=TEXT[i // 2:i // 2 + 4], context_id="short")
            await send(ws, text=TEXT[200:], context_id="short", flush=True)
            got = Got()
            while len(got.audio.get("long", b"")) < 16000:  # half a second of it arrived
                absorb(got, json.loads(await asyncio.wait_for(ws.recv(), 20)))
            await send(ws, context_id="long", close_context=True)
            await read(ws, got, until_final={"long"}, timeout=20)
            stopped_at = len(got.audio["long"])
            await send(ws, context_id="short", close_context=True)
            await send(ws, close_socket=True)
            await read(ws, got)
            got.errors.append({"long_at_final": stopped_at})
            return got

    got = asyncio.run(main())
    assert set(got.finals) == {"long", "short"} and got.close_code == 1000
    assert all("contextId" in m for m in got.messages)
    long_seconds = len(got.audio["long"]) / 2 / 16000
    assert long_seconds < 15, long_seconds  # LONG would be minutes of speech
    assert got.errors == [{"long_at_final": len(got.audio["long"])}]  # nothing after isFinal
    assert got.chars("short").strip() == TEXT.strip()
    wait_idle(server)


def test_a_closed_context_id_can_be_used_again(server):
    async def main() -> Got:
        async with websockets.connect(url(server, multi=True, output_format="pcm_16000")) as ws:
            await send(ws, text="First turn.", context_id="turn", flush=True)
            await send(ws, context_id="turn", close_context=True)
            await send(ws, text="Second turn.", context_id="turn", flush=True)
            await send(ws, close_socket=True)
            return await read(ws, Got())

    got = asyncio.run(main())
    assert got.finals == ["turn", "turn"] and not got.errors and got.close_code == 1000
    # two utterances, not linked: the second's messages come after the first's isFinal
    assert got.chars("turn") == "First turn.Second turn."
    kinds = ["final" if m.get("isFinal") else "aligned" for m in got.messages
             if m.get("isFinal") or m.get("alignment")]
    assert kinds == ["aligned", "final", "aligned", "final"]


def test_bad_output_format_and_voice_get_elevenlabs_errors_and_close_1008(server):
    async def attempt(voice: str, **params) -> Got:
        async with websockets.connect(url(server, voice, **params)) as ws:
            try:
                await send(ws, text=" ")
                await send(ws, text="Hello.")
            except websockets.ConnectionClosed:
                pass  # a bad query is refused before the first message
            return await read(ws, Got())

    fmt = asyncio.run(attempt("kavya", output_format="wav_99"))
    voice = asyncio.run(attempt("nobody"))
    timeout = asyncio.run(attempt("kavya", inactivity_timeout="nope"))
    (bad_fmt,), (bad_voice,) = fmt.errors, voice.errors
    assert bad_fmt["error"] == "unsupported_output_format" and bad_fmt["code"] == 1008
    assert "pcm_16000" in bad_fmt["valid"] and bad_fmt["param"] == "output_format"
    assert bad_voice["error"] == "unknown_speaker" and bad_voice["param"] == "voice_id"
    assert "kavya" in bad_voice["valid"]
    assert timeout.errors[0]["error"] == "invalid_inactivity_timeout"
    for got in (fmt, voice, timeout):
        assert got.close_code == 1008 and got.close_reason and not got.audio


def test_a_message_that_is_not_elevenlabs_json_closes_1008(server):
    async def main() -> Got:
        async with websockets.connect(url(server)) as ws:
            await send(ws, text=" ")
            await ws.send("{not json")
            return await read(ws, Got())

    got = asyncio.run(main())
    assert [e["error"] for e in got.errors] == ["invalid_input_message"]
    assert got.close_code == 1008


def test_inactivity_timeout_closes_1008(server):
    async def main() -> tuple[Got, float]:
        async with websockets.connect(url(server, inactivity_timeout=1)) as ws:
            await send(ws, text=" ")
            t0 = time.perf_counter()
            got = await read(ws, Got())
            return got, time.perf_counter() - t0

    got, took = asyncio.run(main())
    assert 0.9 < took < 3 and got.close_code == 1008
    assert [e["error"] for e in got.errors] == ["input_timeout_exceeded"]


def test_keys_from_xi_api_key_header_field_and_authorization(tmp_path, start_server):
    import os
    data = tmp_path / "keyed-data"
    env = {**os.environ, "VEENA_DATA_DIR": str(data)}
    secret = subprocess.run([sys.executable, "-m", "veena.platform.cli", "keys", "create",
                             "--owner", "el-ws"], env=env, capture_output=True, text=True,
                            check=True, timeout=60).stdout.strip()
    srv = start_server(env={"VEENA_DATA_DIR": str(data)})

    async def attempt(headers: dict | None = None, first: dict | None = None,
                      **params) -> Got:
        async with websockets.connect(url(srv, output_format="pcm_16000", **params),
                                      additional_headers=headers) as ws:
            await send(ws, text=" ", **(first or {}))
            await send(ws, text="Who goes there?")
            await send(ws, text="")
            return await read(ws, Got())

    async def main() -> list[Got]:
        return [await attempt(),
                await attempt({"xi-api-key": "vk_wrong"}),
                await attempt({"xi-api-key": secret}),
                await attempt(first={"xi-api-key": secret}),
                await attempt(first={"xi_api_key": secret}),
                await attempt(first={"authorization": f"Bearer {secret}"}),
                await attempt({"Authorization": f"Bearer {secret}"}),
                await attempt(authorization="Bearer vk_in_the_query")]

    missing, wrong, *ok, in_query = asyncio.run(main())
    # a key in the query string is not taken (the connection log line shows the query)
    for got in (missing, in_query):
        assert [e["error"] for e in got.errors] == ["missing_api_key"]
    assert [e["error"] for e in wrong.errors] == ["invalid_api_key"]
    assert missing.close_code == wrong.close_code == 1008
    for got in ok:
        assert got.finals == ["default"] and got.close_code == 1000 and got.audio, got.errors
    assert secret not in srv.log.read_text()


def test_a_socket_killed_mid_stream_leaks_nothing(server):
    async def main(multi: bool) -> None:
        ws = await websockets.connect(url(server, multi=multi, output_format="mp3_44100_128"))
        await send(ws, text=" ")
        await send(ws, text=LONG)
        for _ in range(3):
            await asyncio.wait_for(ws.recv(), 10)
        ws.transport.abort()  # no close frame: the peer just vanishes

    for multi in (False, True, False):
        asyncio.run(main(multi))
        wait_idle(server)
    assert server.health()["active_streams"] == 0
    done = [e for e in server.events("tts.stream_completed")]
    assert done and all(e["outcome"] in ("cancelled", "completed") for e in done)


@pytest.fixture
def tls_proxy(server, tmp_path, monkeypatch):
    """``wss://127.0.0.1:PORT`` in front of the server: the SDK's realtime client always connects
    with TLS. A certificate for 127.0.0.1 is made here and trusted through ``SSL_CERT_FILE``."""
    import datetime
    import ipaddress
    import ssl
    import threading

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)

    async def pipe(reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    loop = asyncio.new_event_loop()
    listening = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{listening.sockets[0].getsockname()[1]}"

    async def shutdown() -> None:
        listening.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.mark.filterwarnings("ignore:ConnectionClosed.code is deprecated")  # the SDK's own use
def test_official_sdk_realtime_client(server, tls_proxy):
    from elevenlabs import VoiceSettings
    from elevenlabs.client import ElevenLabs
    from elevenlabs.core.api_error import ApiError

    client = ElevenLabs(api_key="unused", base_url=tls_proxy)
    pieces = [TEXT[i:i + 6] for i in range(0, len(TEXT), 6)]
    pcm = b"".join(client.text_to_speech.convert_realtime(
        voice_id="kavya", text=iter(pieces), output_format="pcm_16000",
        voice_settings=VoiceSettings(stability=0.5, similarity_boost=0.75, speed=1.0)))
    samples, rate = decode(pcm, "pcm", 16000)
    assert len(samples) / rate > 4
    mp3 = b"".join(client.text_to_speech.convert_realtime(voice_id="maitri",
                                                           text=iter(["Short one. "])))
    assert decode(mp3, "mp3")[1] == 44100
    with pytest.raises(ApiError) as err:
        b"".join(client.text_to_speech.convert_realtime(voice_id="nobody",
                                                         text=iter(["Hello there. "])))
    assert err.value.status_code == 1008 and "nobody" in str(err.value.body)


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    """The neural voice (Veena3 on a tiny random checkpoint, CPU) behind the same routes."""
    pytest.importorskip("torch")
    from tests.conftest import Server
    from tests.support.spark_checkpoint import tiny_checkpoint

    class SparkServer(Server):
        def _wait(self, timeout: float = 180.0) -> None:  # torch import and model load
            super()._wait(timeout)

    config = f"""
[stages]
synthesizer = "spark"

[plugins.spark]
model_path = "{tiny_checkpoint(tmp_path_factory)}"
threads = 1
max_tokens = 150
"""
    srv = SparkServer(config, tmp_path_factory.mktemp("spark-el-ws"))
    yield srv
    srv.stop()


def test_the_neural_voice_streams_aligned_segments_and_close_context_frees_it(spark):
    got = asyncio.run(speak(spark, "Hello there. How are you today?", output_format="pcm_16000"))
    assert got.finals == ["default"] and got.close_code == 1000, got.errors
    samples, rate = decode(bytes(got.audio["default"]), "pcm", 16000)
    pieces = got.alignment["default"]
    assert len(pieces) == 2 and got.chars().strip() == "Hello there. How are you today?"
    check_alignment(pieces)
    assert abs(sum(spans(pieces)) - len(samples) / rate) < 0.02

    async def barge_in() -> Got:
        async with websockets.connect(url(spark, multi=True, output_format="pcm_16000")) as ws:
            await send(ws, text="One sentence here. " * 20, context_id="a")
            got = Got()
            while not got.audio:
                absorb(got, json.loads(await asyncio.wait_for(ws.recv(), 60)))
            await send(ws, context_id="a", close_context=True)  # unflushed: stops at once
            await send(ws, close_socket=True)
            return await read(ws, got)

    stopped = asyncio.run(barge_in())
    assert stopped.finals == ["a"] and stopped.close_code == 1000
    wait_idle(spark, 30)
