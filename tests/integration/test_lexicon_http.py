"""The pronunciation lexicon through a real server on loopback: the operator's file and a
request's ``pronunciations`` on every synthesis route (the spoken text read back from sentence
storage, and from ElevenLabs' ``normalized_alignment``), the file rewritten under the running
server, and the bounds answered with 400 ``invalid_pronunciations`` on each route."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time

import httpx
import pytest
import websockets

from veena.platform.schemas import MAX_PRONUNCIATIONS

TEXT = "Veena met Rao in Hyd."
MINE = [{"word": "Rao", "spoken": "Raao"}, {"word": "hyd", "spoken": "Hyderabad"}]
SPOKEN = "वीणा met Raao in Hyderabad."
TOO_MANY = [{"word": f"w{i}", "spoken": "x"} for i in range(MAX_PRONUNCIATIONS + 1)]


@pytest.fixture
def served(tmp_path, start_server):
    lexicon = tmp_path / "names.tsv"
    lexicon.write_text("# operator lexicon\nVeena\tवीणा\nRao\tRaa-o\n", encoding="utf-8")
    db = tmp_path / "veena.db"
    srv = start_server(f'''
[plugins.lexicon]
files = [{{ path = "{lexicon}" }}]

[plugins.storage]
backend = "sqlite"
sqlite_path = "{db}"
spool_dir = "{tmp_path / 'spool'}"
flush_seconds = 0.01

[plugins.auth]
sqlite_path = "{db}"
spool_dir = "{tmp_path / 'spool'}"
''')
    return srv, db, lexicon


def stored(db, request_id: str, timeout: float = 10.0) -> str:
    """The normalized text the server stored for ``request_id`` (waits for the flush)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(db) as conn:
                row = conn.execute("SELECT normalized_text FROM veena_sentences WHERE "
                                   "request_id = ?", (request_id,)).fetchone()
        except sqlite3.OperationalError:  # the table is not there yet
            row = None
        if row:
            return row[0]
        time.sleep(0.05)
    raise AssertionError(f"no stored sentence for {request_id}")


def post(srv, path: str, body: dict, rid: str, **params) -> httpx.Response:
    return httpx.post(srv.url + path, json=body, params=params or None, timeout=60,
                      headers={"X-Request-ID": rid})


def bad(resp: httpx.Response) -> dict:
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["code"] == "invalid_pronunciations" and err["param"] == "pronunciations"
    return err


def timed_text(srv, text: str, **body) -> str:
    """What the voice was given, from ElevenLabs' ``normalized_alignment``."""
    resp = httpx.post(srv.url + "/v1/text-to-speech/kavya/with-timestamps",
                      json={"text": text, **body}, params={"output_format": "pcm_16000"},
                      timeout=60)
    assert resp.status_code == 200, resp.text
    return "".join(resp.json()["normalized_alignment"]["characters"])


def test_generate_route(served):
    srv, db, _ = served
    resp = post(srv, "/v1/tts/generate", {"text": TEXT, "format": "wav", "stream": False,
                                          "pronunciations": MINE}, "lex-generate")
    assert resp.status_code == 200 and resp.content[:4] == b"RIFF"
    assert stored(db, "lex-generate") == SPOKEN
    post(srv, "/v1/tts/generate", {"text": TEXT, "format": "wav"}, "lex-file-only")
    assert stored(db, "lex-file-only") == "वीणा met Raa-o in Hyd."  # the file alone
    err = bad(post(srv, "/v1/tts/generate", {"text": TEXT, "pronunciations": TOO_MANY}, "x"))
    assert err["max_entries"] == MAX_PRONUNCIATIONS and "max_word_chars" in err


def test_openai_speech_route(served):
    srv, db, _ = served
    resp = post(srv, "/v1/audio/speech", {"input": TEXT, "voice": "alloy",
                                          "response_format": "wav", "pronunciations": MINE},
                "lex-speech")
    assert resp.status_code == 200, resp.text
    assert stored(db, "lex-speech") == SPOKEN
    bad(post(srv, "/v1/audio/speech", {"input": TEXT, "pronunciations": TOO_MANY}, "x"))


def test_elevenlabs_routes(served):
    srv, db, _ = served
    for path in ("/v1/text-to-speech/kavya", "/v1/text-to-speech/kavya/stream"):
        rid = "lex-11" + path.replace("/", "-")
        resp = post(srv, path, {"text": TEXT, "pronunciations": MINE,
                                "pronunciation_dictionary_locators": []}, rid,
                    output_format="pcm_16000")
        assert resp.status_code == 200, resp.text
        assert stored(db, rid) == SPOKEN
        bad(post(srv, path, {"text": TEXT, "pronunciations": TOO_MANY}, "x"))
    assert timed_text(srv, TEXT, pronunciations=MINE) == SPOKEN


def test_websocket_start_message(served):
    srv, db, _ = served
    url = srv.url.replace("http://", "ws://") + "/v1/tts/ws"

    async def session(start: dict) -> list[dict]:
        events = []
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"type": "start", "format": "pcm", **start}))
            await ws.send(json.dumps({"type": "text", "text": TEXT}))
            await ws.send(json.dumps({"type": "end"}))
            try:
                while True:
                    msg = await asyncio.wait_for(ws.recv(), 30)
                    if isinstance(msg, str):
                        events.append(json.loads(msg))
            except websockets.ConnectionClosed as exc:
                events.append({"type": "closed", "code": exc.rcvd.code if exc.rcvd else None})
        return events

    events = asyncio.run(session({"pronunciations": MINE}))
    done = [e for e in events if e["type"] == "done"]
    assert done and done[0]["outcome"] == "completed", events
    assert " ".join(stored(db, rid) for rid in done[0]["request_ids"]) == SPOKEN
    events = asyncio.run(session({"pronunciations": TOO_MANY}))
    errors = [e for e in events if e["type"] == "error"]
    assert errors and errors[0]["code"] == "invalid_pronunciations", events
    assert errors[0]["max_entries"] == MAX_PRONUNCIATIONS
    assert events[-1] == {"type": "closed", "code": 4400}


def test_file_rewritten_under_the_running_server_is_used_at_once(served):
    srv, _, lexicon = served
    assert timed_text(srv, TEXT) == "वीणा met Raa-o in Hyd."
    lexicon.write_text("Veena\tवी-णा\nHyd\tHyderabad\n", encoding="utf-8")
    st = os.stat(lexicon)  # a coarse clock could leave the time as it was: move it on
    os.utime(lexicon, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert timed_text(srv, TEXT) == "वी-णा met Rao in Hyderabad."
    # a request's own entry still comes first
    assert timed_text(srv, TEXT, pronunciations=[{"word": "Veena", "spoken": "Vina"}]) == \
        "Vina met Rao in Hyderabad."


def test_word_times_point_at_the_word_a_pronunciation_replaced(served):
    """eSpeak NG's exact word times: the several words of a spoken form are one item, the
    client's word, and every word of the text is covered in order."""
    from tests.integration.test_timestamps import check_words

    srv, _, _ = served
    text = "We met Rao in Hyd today."
    resp = httpx.post(srv.url + "/v1/tts/generate", timeout=60, json={
        "text": text, "format": "wav", "timestamps": True, "stream": False,
        "pronunciations": [{"word": "Hyd", "spoken": "the old city of Hyderabad"}]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    check_words(text, body["words"], body["audio_seconds"], exact=True)
    hyd = [w for w in body["words"] if "Hyd" in text[w["text_start"]:w["text_end"]]]
    rao = [w for w in body["words"] if text[w["text_start"]:w["text_end"]] == "Rao"]
    assert len(hyd) == 1 and len(rao) == 1, body["words"]
    # five spoken words against one: the item lasts several times as long
    assert hyd[0]["end"] - hyd[0]["start"] > 2.5 * (rao[0]["end"] - rao[0]["start"])
