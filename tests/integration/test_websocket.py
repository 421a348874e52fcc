"""``WS /v1/tts/ws`` end to end: a real ``veena serve`` on loopback (embedded eSpeak NG voice)
driven by a real WebSocket client (the ``websockets`` package)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx
import pytest
import websockets

from tests.support.decode import decode

SENTENCES = ("Hello there, this is a streaming test. The second sentence follows the first one. "
             "And here is a third, a little longer than the others, to end it.")


@dataclass
class Got:
    """Everything one socket received, by context."""

    ready: dict = field(default_factory=dict)
    audio: dict[str, bytearray] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    first_audio: float | None = None
    close_code: int | None = None
    close_reason: str = ""

    def of(self, kind: str, cid: str | None = None) -> list[dict]:
        return [e for e in self.events if e["type"] == kind
                and (cid is None or e.get("context_id") == cid)]


def ws_url(srv) -> str:
    return srv.url.replace("http://", "ws://") + "/v1/tts/ws"


async def receive_all(ws, got: Got, until_done: set[str] | None = None,
                      timeout: float = 60) -> Got:
    """Reads until the socket closes (or every context in ``until_done`` sent ``done``)."""
    pending_cid = None
    deadline = time.monotonic() + timeout
    try:
        while True:
            msg = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
            if isinstance(msg, bytes):
                assert pending_cid is not None, "a binary frame without its audio event"
                got.audio.setdefault(pending_cid, bytearray()).extend(msg)
                got.first_audio = got.first_audio or time.perf_counter()
                pending_cid = None
                continue
            ev = json.loads(msg)
            if ev["type"] == "audio":
                got.events.append({"type": "audio", "context_id": ev["context_id"]})
                if "audio" in ev:
                    import base64
                    got.audio.setdefault(ev["context_id"], bytearray()).extend(
                        base64.b64decode(ev["audio"]))
                    got.first_audio = got.first_audio or time.perf_counter()
                else:
                    pending_cid = ev["context_id"]
                continue
            if ev["type"] == "ready":
                got.ready = ev
            got.events.append(ev)
            if until_done is not None and until_done <= {e["context_id"] for e in got.of("done")}:
                return got
    except websockets.ConnectionClosed as exc:
        got.close_code = exc.rcvd.code if exc.rcvd else None
        got.close_reason = exc.rcvd.reason if exc.rcvd else ""
    return got


async def send(ws, **msg) -> None:
    await ws.send(json.dumps(msg))


async def speak(srv, text: str, *, piece: int = 4, **start) -> Got:
    """One context fed ``piece`` characters at a time, then ``end``."""
    async with websockets.connect(ws_url(srv), max_size=None) as ws:
        await send(ws, type="start", **start)
        for i in range(0, len(text), piece):
            await send(ws, type="text", text=text[i:i + piece])
        await send(ws, type="end")
        return await receive_all(ws, Got())


def wait_idle(srv, timeout: float = 15.0) -> None:
    """Until the server has no stream in progress."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.health()["active_streams"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"streams still active: {srv.health()}")


def test_first_audio_arrives_before_end_and_the_stream_is_whole(server):
    async def main() -> tuple[Got, float, float]:
        async with websockets.connect(ws_url(server)) as ws:
            await send(ws, type="start", format="pcm")
            got = Got()
            got.ready = json.loads(await ws.recv())
            first = "Hello there, my friend. "
            for i in range(0, len(first), 3):
                await send(ws, type="text", text=first[i:i + 3])
            sent = time.perf_counter()
            head = json.loads(await asyncio.wait_for(ws.recv(), 10))  # no end sent yet
            assert head["type"] == "audio" and head["context_id"] == "default"
            assert isinstance(await ws.recv(), bytes)
            arrived = time.perf_counter()
            await send(ws, type="text", text="How are you tod")
            await send(ws, type="text", text="ay?")
            await send(ws, type="end")
            await receive_all(ws, got)
            return got, sent, arrived

    got, sent, arrived = asyncio.run(main())
    assert arrived - sent < 5
    assert got.ready["format"] == "pcm" and got.ready["sample_rate"] == 22050
    (done,) = got.of("done")
    assert done["outcome"] == "completed" and len(done["request_ids"]) == 2
    assert got.close_code == 1000
    samples, rate = decode(bytes(got.audio["default"]), "pcm", 22050)
    head_bytes = done["bytes"] - len(got.audio["default"])
    assert head_bytes > 0  # the first frame was read above, outside `got`
    assert abs((len(samples) + head_bytes // 2) / rate - done["audio_seconds"]) < 0.01
    wait_idle(server)


def test_audio_frames_are_not_compressed(server):
    """The client offers permessage-deflate (websockets does by default); the server declines:
    deflating audio gains nothing and cost half the event loop at 50 sockets."""
    async def main() -> str | None:
        async with websockets.connect(ws_url(server)) as ws:
            return ws.response.headers.get("Sec-WebSocket-Extensions")

    assert asyncio.run(main()) is None


FORMATS = ["pcm", "mulaw", "alaw", "wav", "mp3", "opus", "flac", "aac"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_decodes_to_the_end_as_one_stream(server, fmt):
    got = asyncio.run(speak(server, SENTENCES, format=fmt))
    (done,) = got.of("done")
    assert done["outcome"] == "completed" and len(done["request_ids"]) >= 3, done
    body = bytes(got.audio["default"])
    assert len(body) == done["bytes"]
    samples, rate = decode(body, fmt, got.ready["sample_rate"])
    assert rate == (48000 if fmt == "opus" else got.ready["sample_rate"])  # Opus decodes at 48 kHz
    # One stream across every segment: all of the audio decodes (codec padding aside).
    assert abs(len(samples) / rate - done["audio_seconds"]) < 0.15, (len(samples) / rate, done)
    assert float(abs(samples).max()) > 0.05


def test_base64_audio_and_alignment(server):
    got = asyncio.run(speak(server, SENTENCES, piece=7, format="pcm", binary=False,
                            timestamps=True))
    (done,) = got.of("done")
    alignments = got.of("alignment")
    assert len(alignments) == len(done["request_ids"]) >= 3
    end_prev, words = 0.0, []
    for a in alignments:
        assert a["audio_start"] == pytest.approx(end_prev, abs=1e-3) and a["audio_end"] > a["audio_start"]
        end_prev = a["audio_end"]
        assert SENTENCES[a["text_start"]:a["text_end"]].strip() == SENTENCES[a["text_start"]:a["text_end"]]
        words += a["words"]
    assert end_prev == pytest.approx(done["audio_seconds"], abs=1e-3)
    assert [SENTENCES[w["text_start"]:w["text_end"]] for w in words] == SENTENCES.split()
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and not any(w["estimated"] for w in words)  # eSpeak NG's
    samples, rate = decode(bytes(got.audio["default"]), "pcm", 22050)
    assert len(samples) / rate == pytest.approx(done["audio_seconds"], abs=1e-3)


def test_max_wait_speaks_text_without_a_boundary_and_flush_speaks_at_once(server):
    async def main() -> tuple[float, float]:
        async with websockets.connect(ws_url(server)) as ws:
            await send(ws, type="start", format="pcm")
            await ws.recv()
            t0 = time.perf_counter()
            await send(ws, type="text", text="no boundary in this text at all")
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "audio"
            waited = time.perf_counter() - t0
            await ws.recv()
            await asyncio.sleep(1.0)
            while True:  # the rest of the first segment
                try:
                    await asyncio.wait_for(ws.recv(), 0.3)
                except TimeoutError:
                    break
            await send(ws, type="text", text="a flushed piece", context_id="b")
            t1 = time.perf_counter()
            await send(ws, type="flush", context_id="b")
            head = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert head["type"] == "audio" and head["context_id"] == "b"
            return waited, time.perf_counter() - t1

    waited, flushed = asyncio.run(main())
    assert 0.3 < waited < 3.0  # max_wait_s is 0.4
    assert flushed < 0.3


def test_contexts_run_side_by_side_and_cancel_stops_one_at_once(server):
    long_text = "This context goes on and on. " * 40

    async def main() -> Got:
        async with websockets.connect(ws_url(server)) as ws:
            await send(ws, type="start", format="mp3")
            got = Got()
            await send(ws, type="text", text=long_text, context_id="long")
            await send(ws, type="text", text="A short one.", context_id="short")
            await send(ws, type="end", context_id="short")
            # wait for some of the long context's audio, then barge in
            while len(got.audio.get("long", b"")) < 2000:
                msg = await asyncio.wait_for(ws.recv(), 10)
                if isinstance(msg, bytes):
                    got.audio.setdefault(cid, bytearray()).extend(msg)
                else:
                    ev = json.loads(msg)
                    cid = ev.get("context_id")
                    if ev["type"] != "audio":
                        got.events.append(ev)
            await send(ws, type="cancel", context_id="long")
            await receive_all(ws, got, until_done={"long", "short"}, timeout=20)
            await send(ws, type="end")
            await receive_all(ws, got)
            return got

    got = asyncio.run(main())
    (long_done,) = got.of("done", "long")
    (short_done,) = got.of("done", "short")
    assert short_done["outcome"] == "completed"
    assert long_done["outcome"] == "cancelled"
    assert long_done["audio_seconds"] < 60  # 40 sentences make well over a minute
    after = got.events[got.events.index(long_done):]
    assert not [e for e in after if e["type"] == "audio" and e["context_id"] == "long"]
    assert got.close_code == 1000
    samples, rate = decode(bytes(got.audio["short"]), "mp3")
    assert abs(len(samples) / rate - short_done["audio_seconds"]) < 0.15
    wait_idle(server)
    stopped = [e for e in server.events("tts.stream_completed")
               if e.get("request_id") in long_done["request_ids"]]
    assert any(e["outcome"] == "cancelled" for e in stopped)


def test_a_socket_killed_mid_stream_leaks_nothing(server):
    async def main() -> str:
        ws = await websockets.connect(ws_url(server))
        await send(ws, type="start", format="opus")
        ready = json.loads(await ws.recv())
        await send(ws, type="text", text="Talking for a long while now. " * 60)
        for _ in range(4):
            await asyncio.wait_for(ws.recv(), 10)
        ws.transport.abort()  # no close frame: the peer just vanishes
        return ready["request_id"]

    for _ in range(3):
        rid = asyncio.run(main())
        wait_idle(server)
        closed = server.wait_event("ws.closed", rid)
        assert closed[0]["code"] == 0
        done = [e for e in server.events("tts.stream_completed") if e.get("request_id", "").startswith(rid)]
        assert done and all(e["outcome"] in ("cancelled", "completed") for e in done)
    assert server.health()["active_streams"] == 0


def test_bad_messages_get_error_events_and_the_socket_lives_on(server):
    async def main() -> Got:
        async with websockets.connect(ws_url(server)) as ws:
            await send(ws, type="start")
            await ws.send("{not json")
            await send(ws, type="shout", text="x")
            await send(ws, type="text")
            await send(ws, type="start")
            await send(ws, type="text", text="Fine after all.")
            await send(ws, type="end")
            return await receive_all(ws, Got())

    got = asyncio.run(main())
    codes = [e["code"] for e in got.of("error")]
    assert codes == ["invalid_json", "invalid_message", "invalid_message", "already_started"]
    assert got.of("done")[0]["outcome"] == "completed" and got.close_code == 1000


@pytest.mark.parametrize("first, code, close", [
    ({"type": "text", "text": "hi"}, "start_required", 4400),
    ({"type": "start", "voice": "nobody"}, "unknown_speaker", 4400),
    ({"type": "start", "format": "wma"}, "unsupported_format", 4400),
    ({"type": "start", "format": "mulaw", "sample_rate": 44100}, "unsupported_sample_rate", 4400),
])
def test_a_bad_start_is_an_error_event_then_a_close_code(server, first, code, close):
    async def main() -> Got:
        async with websockets.connect(ws_url(server)) as ws:
            await ws.send(json.dumps(first))
            return await receive_all(ws, Got())

    got = asyncio.run(main())
    assert [e["code"] for e in got.of("error")] == [code]
    assert (got.close_code, got.close_reason) == (close, code)
    # the same code as HTTP gives for the same mistake
    if first["type"] == "start":
        body = {"text": "hi", **{k: v for k, v in first.items() if k != "type"}}
        body["speaker"] = body.pop("voice", None)
        resp = httpx.post(server.url + "/v1/tts/generate", json=body, timeout=10)
        assert resp.json()["error"]["code"] == code


def test_limits_have_their_errors_and_close_codes(start_server):
    srv = start_server("[plugins.websocket]\nmax_message_bytes = 2000\nmax_buffered_chars = 500\n"
                       "max_contexts = 2\nidle_timeout_s = 1.0\nmax_wait_s = 0\n")

    async def main() -> tuple[Got, Got, Got]:
        async with websockets.connect(ws_url(srv)) as ws:
            await send(ws, type="start")
            await send(ws, type="text", text="no end " * 50, context_id="a")  # 350 chars
            await send(ws, type="text", text="no end " * 30, context_id="a")  # 560 > 500
            await send(ws, type="text", text="x", context_id="b")
            await send(ws, type="text", text="x", context_id="c")
            await send(ws, type="end", context_id="b")
            limits = await receive_all(ws, Got(), until_done={"b"})
            await send(ws, type="text", text="more", context_id="b")  # b is done: a new b
            await send(ws, type="cancel")
            await send(ws, type="text", text="y" * 3000)
            await receive_all(ws, limits)
        async with websockets.connect(ws_url(srv)) as ws:
            await send(ws, type="start")
            t0 = time.perf_counter()
            idle = await receive_all(ws, Got())
            idle.first_audio = time.perf_counter() - t0
        async with websockets.connect(ws_url(srv)) as ws:
            await send(ws, type="start")
            await send(ws, type="text", text="Ended.", context_id="e")
            await send(ws, type="end", context_id="e")
            await send(ws, type="text", text="Again?", context_id="e")
            await send(ws, type="end")
            ended = await receive_all(ws, Got())
        return limits, idle, ended

    limits, idle, ended = asyncio.run(main())
    codes = [e["code"] for e in limits.of("error")]
    assert codes == ["text_buffer_full", "too_many_contexts", "message_too_large"], codes
    assert (limits.close_code, limits.close_reason) == (1009, "message_too_large")
    assert (idle.close_code, idle.close_reason) == (4408, "idle_timeout")
    assert 0.9 < idle.first_audio < 5
    assert [e["code"] for e in ended.of("error")] in (["context_ended"], [])
    wait_idle(srv)


def test_keys_from_headers_or_the_start_message(tmp_path, start_server):
    import os
    import subprocess
    import sys
    data = tmp_path / "keyed-data"
    env = {**os.environ, "VEENA_DATA_DIR": str(data)}
    secret = subprocess.run([sys.executable, "-m", "veena.platform.cli", "keys", "create",
                             "--owner", "ws"], env=env, capture_output=True, text=True,
                            check=True, timeout=60).stdout.strip()
    srv = start_server(env={"VEENA_DATA_DIR": str(data)})

    async def attempt(headers: dict[str, str] | None = None, **start) -> Got:
        async with websockets.connect(ws_url(srv), additional_headers=headers) as ws:
            await send(ws, type="start", **start)
            await send(ws, type="text", text="Who goes there?")
            await send(ws, type="end")
            return await receive_all(ws, Got())

    async def main() -> list[Got]:
        return [await attempt(),
                await attempt(api_key="vk_wrong"),
                await attempt({"Authorization": f"Bearer {secret}"}),
                await attempt({"X-API-Key": secret}),
                await attempt(api_key=secret)]

    missing, wrong, bearer, header, field_ = asyncio.run(main())
    assert [e["code"] for e in missing.of("error")] == ["missing_api_key"]
    assert (missing.close_code, missing.close_reason) == (4401, "missing_api_key")
    assert [e["code"] for e in wrong.of("error")] == ["invalid_api_key"]
    for ok in (bearer, header, field_):
        assert ok.of("done")[0]["outcome"] == "completed" and ok.close_code == 1000
    assert secret not in srv.log.read_text()


def test_many_sockets_at_once(server):
    n = 100

    async def one(i: int) -> Got:
        return await speak(server, f"Socket number {i} says hello. And goodbye.", piece=6,
                           format="pcm")

    async def main() -> list[Got]:
        return await asyncio.gather(*(one(i) for i in range(n)))

    t0 = time.perf_counter()
    results = asyncio.run(main())
    took = time.perf_counter() - t0
    assert all(r.of("done")[0]["outcome"] == "completed" and r.close_code == 1000
               for r in results)
    assert all(len(r.audio["default"]) > 22050 for r in results)
    assert took < 60
    wait_idle(server)


def test_a_reader_that_stops_reading_stops_synthesis_ahead(start_server):
    server = start_server("[plugins.websocket]\nmax_buffered_chars = 20000\n")
    sentences = 250  # 48 kHz PCM: about 9 minutes and 50 MB, more than socket buffers hold

    async def main() -> tuple[int, int, Got]:
        async with websockets.connect(ws_url(server), max_queue=1) as ws:
            await send(ws, type="start", format="pcm", sample_rate=48000)
            ready = json.loads(await ws.recv())
            await send(ws, type="text", text="Another sentence to speak right now. " * sentences)
            await send(ws, type="end")
            await asyncio.sleep(3.0)  # not reading: eSpeak NG would finish all of it in this time
            prefix = ready["request_id"] + "-"
            paused = [e for e in server.events("tts.stream_completed")
                      if e.get("request_id", "").startswith(prefix)]
            active = server.health()["active_streams"]
            got = await receive_all(ws, Got())
            return len(paused), active, got

    paused, active, got = asyncio.run(main())
    (done,) = got.of("done")
    assert done["outcome"] == "completed" and len(done["request_ids"]) == sentences
    assert paused < sentences // 2 and active == 1, (paused, active)


@pytest.mark.skipif("speed" not in __import__("veena.platform.schemas", fromlist=["x"])
                    .GenerateRequest.__struct_fields__, reason="this server has no speed option")
def test_speed_applies_to_every_segment(server):
    normal = asyncio.run(speak(server, SENTENCES, format="pcm"))
    fast = asyncio.run(speak(server, SENTENCES, format="pcm", speed=2.0))
    bad = asyncio.run(speak(server, "Hi.", format="pcm", speed=9.0))
    ratio = fast.of("done")[0]["audio_seconds"] / normal.of("done")[0]["audio_seconds"]
    assert 0.4 < ratio < 0.65, ratio
    assert [e["code"] for e in bad.of("error")] == ["invalid_speed"] and bad.close_code == 4400


@pytest.mark.parametrize("point", ["before_start", "after_start", "mid_text", "mid_audio",
                                   "after_end", "mid_cancel"])
def test_a_socket_dropped_at_any_point_leaks_nothing(server, point):
    async def main() -> None:
        ws = await websockets.connect(ws_url(server))
        if point != "before_start":
            await send(ws, type="start", format="flac")
            await ws.recv()
        if point in ("mid_text", "mid_audio", "after_end", "mid_cancel"):
            await send(ws, type="text", text="Half a sen")
            await send(ws, type="text", text="tence. And more words. " * 20, context_id="x")
        if point in ("mid_audio", "mid_cancel"):
            while not isinstance(await asyncio.wait_for(ws.recv(), 10), bytes):
                pass
        if point == "mid_cancel":
            await send(ws, type="cancel")
        if point == "after_end":
            await send(ws, type="end")
        ws.transport.abort()

    before = len(server.events("ws.closed"))
    asyncio.run(main())
    deadline = time.monotonic() + 15
    while len(server.events("ws.closed")) <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(server.events("ws.closed")) == before + 1
    wait_idle(server)
