"""The try-it page (plugins/page) in real headless Chromium against a real server on loopback:
it loads with no console errors and nothing from other origins, plays mp3 (MediaSource), pcm and
wav (Web Audio) and Ogg Opus (WebCodecs) before the download ends, reports the true duration, sends the API key only as a
Bearer header, its speed control changes the duration once the server takes ``speed``, and it
speaks text as it is typed over the WebSocket."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from litestar.testing import TestClient
from playwright.sync_api import Browser, Page, sync_playwright

from veena.platform.app import create_app
from veena.platform.config import VeenaConfig

from tests.conftest import Server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# About 150 s of speech: the embedded voice makes it in a fraction of a second, but that is still
# long enough for the stream to be downloading when playback starts.
TEXT = " ".join(f"This is sentence number {i}, spoken while the rest is generated." for i in range(45))
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--autoplay-policy=no-user-gesture-required",
            "--use-fake-device-for-media-stream", "--mute-audio"])
        yield b
        b.close()


class Loaded:
    """A page at the server's ``/`` with its console errors and every URL it requested."""

    def __init__(self, browser: Browser, server: Server, *, bypass_csp: bool) -> None:
        # Playwright's own string evaluation needs the CSP bypassed; the load test keeps it on.
        self.context = browser.new_context(bypass_csp=bypass_csp)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[httpx.URL] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(httpx.URL(r.url)))
        self.page.goto(server.url + "/")
        self.page.wait_for_selector("body[data-ready='1']", state="attached", timeout=TIMEOUT_MS)

    def speak(self, fmt: str, text: str = TEXT, speed: float = 1.0) -> dict:
        page = self.page
        page.fill("#text", text)
        page.select_option("#format", fmt)
        page.fill("#speed", str(speed))  # a range input: fill sets the value and fires input
        page.click("#speak")
        page.wait_for_function("() => ['done', 'error'].includes("
                               "document.getElementById('status').dataset.state)",
                               timeout=TIMEOUT_MS)
        return page.evaluate("""() => {
            const d = (id, k) => document.getElementById(id).dataset[k];
            return {state: d('status', 'state'), error: document.getElementById('error').textContent,
                    firstAudio: parseFloat(d('first-audio-ms', 'ms')),
                    download: parseFloat(d('download-ms', 'ms')),
                    duration: parseFloat(d('duration-s', 's')),
                    buffers: Number(d('mode', 'buffers') || 0),
                    mode: document.getElementById('mode').textContent};
        }""")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def loaded(browser: Browser, server: Server) -> Iterator[Loaded]:
    page = Loaded(browser, server, bypass_csp=True)
    yield page
    page.close()


def _whole(server: Server, fmt: str, **extra: object) -> httpx.Response:
    resp = httpx.post(server.url + "/v1/tts/generate", timeout=60,
                      json={"text": TEXT, "format": fmt, "stream": False, **extra})
    assert resp.status_code == 200, resp.text
    return resp


def test_page_loads_offline_with_no_console_errors(browser: Browser, server: Server) -> None:
    page = Loaded(browser, server, bypass_csp=False)
    try:
        assert page.errors == []
        origin = httpx.URL(server.url)
        assert page.requests and all((u.host, u.port) == (origin.host, origin.port)
                                     for u in page.requests), page.requests
        formats = page.page.locator("#format option").evaluate_all("os => os.map(o => o.value)")
        assert {"mp3", "opus", "wav", "pcm"} <= set(formats)
        assert page.page.input_value("#format") == "mp3"
        voices = page.page.locator("#voice option").evaluate_all("os => os.map(o => o.value)")
        names = [v["name"] for v in httpx.get(server.url + "/v1/voices", timeout=10).json()]
        assert voices == ["", *names]
        index = httpx.get(server.url + "/", timeout=10)
        assert "default-src 'none'" in index.headers["content-security-policy"]
        assert httpx.get(server.url + "/page/nothing.js", timeout=10).status_code == 404
        # the policy lets the page play its own streams (blob: media for MediaSource, Web Audio)
        for fmt in ("mp3", "opus"):
            page.page.select_option("#format", fmt)
            page.page.click("#speak")
            page.page.wait_for_selector("#status[data-state='done']", state="attached",
                                        timeout=TIMEOUT_MS)
        assert page.errors == [] and page.page.is_hidden("#error")
        # and open its own WebSocket
        page.page.check("#ws-mode")
        page.page.wait_for_selector("#status[data-state='listening']", state="attached",
                                    timeout=TIMEOUT_MS)
        assert page.errors == []
    finally:
        page.close()


def test_mp3_plays_through_mediasource_before_the_download_ends(loaded: Loaded,
                                                                server: Server) -> None:
    got = loaded.speak("mp3")
    assert got["state"] == "done", got
    assert got["mode"].startswith("MediaSource")
    assert got["firstAudio"] < got["download"], got
    # the element really plays: its clock moves on after the stream ended
    loaded.page.wait_for_function("() => document.getElementById('audio').currentTime > 0.3",
                                  timeout=TIMEOUT_MS)
    expected = float(_whole(server, "mp3").headers["X-Audio-Duration-s"])
    assert got["duration"] == pytest.approx(expected, abs=0.15), got
    assert loaded.errors == []


def test_pcm_plays_through_web_audio_before_the_download_ends(loaded: Loaded,
                                                              server: Server) -> None:
    got = loaded.speak("pcm")
    assert got["state"] == "done", got
    assert got["mode"].startswith("Web Audio (pcm")
    assert got["firstAudio"] < got["download"] and got["buffers"] >= 2, got
    whole = _whole(server, "pcm")
    rate = int(whole.headers["X-Sample-Rate"])
    assert got["duration"] == pytest.approx(len(whole.content) / 2 / rate, abs=0.05), got
    assert loaded.errors == []


def test_wav_and_opus_play_before_the_download_ends_flac_after(loaded: Loaded, server: Server) -> None:
    expected = float(_whole(server, "pcm").headers["X-Audio-Duration-s"])
    for fmt, mode in (("wav", "Web Audio (wav"), ("opus", "WebCodecs")):
        got = loaded.speak(fmt)
        assert got["state"] == "done" and got["mode"].startswith(mode), (fmt, got)
        assert 0 < got["firstAudio"] < got["download"], (fmt, got)
        assert got["duration"] == pytest.approx(expected, abs=0.1), (fmt, got)
    # what the browser cannot stream plays once downloaded, with its length counted
    got = loaded.speak("flac")
    assert got["state"] == "done" and got["mode"].startswith("whole file"), got
    assert got["firstAudio"] >= got["download"], got
    assert got["duration"] == pytest.approx(expected, abs=0.1), got
    assert loaded.errors == []


@pytest.mark.parametrize("fmt", ["mulaw", "alaw"])
def test_g711_decoding_matches_ffmpeg(loaded: Loaded, fmt: str) -> None:
    every_byte = bytes(range(256))
    with av.open(io.BytesIO(every_byte), format=fmt,
                 options={"sample_rate": "8000", "ch_layout": "mono"}) as c:
        ffmpeg = np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])
    page = loaded.page.evaluate("alaw => Array.from(g711Decoder(alaw)(Uint8Array.from("
                                "{length: 256}, (_, i) => i)))", fmt == "alaw")
    assert np.array_equal(np.round(np.array(page) * 32768).astype(np.int16), ffmpeg)


def test_api_key_goes_out_as_bearer_and_stays_in_the_tab(browser: Browser, tmp_path: Path,
                                                         start_server) -> None:
    data = tmp_path / "keyed-data"
    secret = subprocess.run([sys.executable, "-m", "veena.platform.cli", "keys", "create",
                             "--owner", "page"], env={**os.environ, "VEENA_DATA_DIR": str(data)},
                            capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    srv = start_server(env={"VEENA_DATA_DIR": str(data)})
    loaded = Loaded(browser, srv, bypass_csp=True)
    try:
        refused = loaded.speak("pcm", text="Who goes there?")
        assert refused["state"] == "error" and "401 missing_api_key" in refused["error"], refused
        page = loaded.page
        page.click("#key-box summary")
        page.fill("#key", secret)
        page.dispatch_event("#key", "change")
        with page.expect_request(lambda r: r.url.endswith("/v1/tts/generate")) as req:
            admitted = loaded.speak("pcm", text="Who goes there?")
        assert admitted["state"] == "done" and admitted["duration"] > 0.3, admitted
        assert req.value.headers["authorization"] == f"Bearer {secret}"
        assert secret not in (req.value.post_data or "")
        stored = page.evaluate("() => [sessionStorage.getItem('veena.apiKey'), "
                               "localStorage.length, document.cookie]")
        assert stored == [secret, 0, ""]
        # a new tab of the same browser context starts without it (sessionStorage is per tab)
        other = loaded.context.new_page()
        other.goto(srv.url + "/")
        assert other.input_value("#key") == ""
        assert secret not in srv.log.read_text()
    finally:
        loaded.close()


def test_speed_changes_the_duration(loaded: Loaded, server: Server) -> None:
    normal = loaded.speak("pcm")
    assert normal["state"] == "done", normal
    fast = loaded.speak("pcm", speed=2.0)
    if fast["state"] == "error" and "400" in fast["error"] and "speed" in fast["error"]:
        pytest.skip(f"this server does not take `speed` on /v1/tts/generate yet: {fast['error']}")
    assert fast["state"] == "done", fast
    assert fast["duration"] < 0.7 * normal["duration"], (normal, fast)
    assert loaded.errors == []


def test_speak_as_you_type_over_the_websocket(loaded: Loaded) -> None:
    page = loaded.page
    assert page.is_visible("#ws-label")  # the server has the websocket plugin
    page.fill("#text", "")
    page.fill("#speed", "1.5")  # sent in the start message (retried at 1x where it is refused)
    page.check("#ws-mode")
    page.wait_for_selector("#status[data-state='listening']", state="attached", timeout=TIMEOUT_MS)
    page.type("#text", "Hello there, this is typed. And this too.", delay=5)
    page.click("#speak")  # a flush: speak what is still buffered
    page.wait_for_function("() => parseFloat(document.getElementById('duration-s').dataset.s) > 1.5",
                           timeout=TIMEOUT_MS)
    got = page.evaluate("""() => [parseFloat(document.getElementById('first-audio-ms').dataset.ms),
                                  Number(document.getElementById('mode').dataset.buffers || 0),
                                  document.getElementById('mode').textContent]""")
    assert got[0] > 0 and got[1] >= 1 and got[2].startswith("WebSocket"), got
    note = page.text_content("#error")
    assert page.is_hidden("#error") or "does not take a speed" in note, note
    page.click("#stop")
    page.wait_for_selector("#status[data-state='idle']", state="attached", timeout=TIMEOUT_MS)
    assert loaded.errors == []


@pytest.mark.parametrize(("disable", "status", "ws"), [
    ([], 200, b'<body data-ws="1">'), (["websocket"], 200, b'<body data-ws="">'),
    (["page"], 404, None)])
def test_the_page_offers_the_websocket_only_where_the_app_serves_it(disable, status, ws) -> None:
    with TestClient(create_app(VeenaConfig(disable=disable))) as client:
        resp = client.get("/")
        assert resp.status_code == status
        if ws is not None:
            assert ws in resp.content and resp.headers["content-type"].startswith("text/html")
