"""Super-resolution through the HTTP API of a real server: every format at 48 kHz.

The server gets a 16 kHz test voice as a separately installed plugin (a ``veena`` entry point
in a folder on PYTHONPATH), since the embedded eSpeak voice is 22.05 kHz, and a small
random-weight AP-BWE checkpoint in the released format."""

import textwrap

import httpx
import numpy as np
import pytest

pytest.importorskip("torch")

from tests.support.decode import decode  # noqa: E402
from veena.plugins.apbwe.checkpoint import write_random_checkpoint  # noqa: E402

FORMATS_48K = ["wav", "pcm", "opus", "mp3", "flac", "aac"]
SECONDS_PER_CHUNK = 0.5

VOICE = textwrap.dedent(f'''
    """A 16 kHz test voice: half a second of a harmonic tone per chunk, in 100 ms blocks."""
    import numpy as np
    from veena.platform.audio import PCM
    from veena.platform.hookspecs import hookimpl

    class Tone16:
        name = "tone16"
        sample_rate = 16000

        async def stream(self, job):
            n = int(16000 * {SECONDS_PER_CHUNK})
            t = np.arange(n) / 16000
            wave = sum(0.2 / k * np.sin(2 * np.pi * 180 * k * t) for k in range(1, 10))
            for i, _ in enumerate(job.chunks):
                job.mark_chunk_started(i)
                for part in np.array_split(wave, 5):
                    yield PCM.from_float(part, 16000)

    @hookimpl
    def veena_register_synthesizers(runtime):
        return [Tone16()]
''')


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    (site / "veena_tone16.py").write_text(VOICE)
    info = site / "veena_tone16-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: veena-tone16\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[veena]\ntone16 = veena_tone16\n")
    ckpt = tmp_path_factory.mktemp("apbwe")
    write_random_checkpoint(ckpt, channels=64, layers=2, seed=1)
    return {"PYTHONPATH": str(site)}, ckpt


CONFIG = """
[stages]
synthesizer = "tone16"
[plugins.chunk]  # one chunk a sentence: the tests count chunks
min_chars = 0
short_chars = 0
[plugins.apbwe]
device = "cpu"
min_block_ms = 100
"""


@pytest.fixture(scope="module")
def sr_server(plugin_env, tmp_path_factory):
    from tests.conftest import Server

    env, ckpt = plugin_env
    srv = Server(CONFIG + f'checkpoint = "{ckpt}"\n', tmp_path_factory.mktemp("sr"), env)
    yield srv
    srv.stop()


def generate(server, **body):
    return httpx.post(server.url + "/v1/tts/generate", json={"text": "One. Two. Three.", **body},
                      timeout=120)


@pytest.mark.parametrize("fmt", FORMATS_48K)
@pytest.mark.parametrize("stream", [True, False])
def test_every_format_at_48k_is_super_resolved(sr_server, fmt, stream):
    resp = generate(sr_server, format=fmt, sample_rate=48000, stream=stream)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-super-resolution"] == "ap-bwe"
    assert resp.headers["x-sample-rate"] == "48000"
    samples, rate = decode(resp.content, fmt, 48000)
    assert rate == 48000
    assert abs(len(samples) / rate - 3 * SECONDS_PER_CHUNK) < 0.1
    assert np.abs(samples).max() > 0.01


@pytest.mark.parametrize("fmt", ["mulaw", "alaw"])
def test_telephone_formats_cannot_be_sent_at_48k(sr_server, fmt):
    resp = generate(sr_server, format=fmt, sample_rate=48000)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "unsupported_sample_rate"


def test_other_rates_pass_without_super_resolution(sr_server):
    resp = generate(sr_server, format="wav", sample_rate=24000)
    assert resp.status_code == 200
    assert "x-super-resolution" not in resp.headers
    samples, rate = decode(resp.content, "wav")
    assert rate == 24000 and abs(len(samples) / rate - 3 * SECONDS_PER_CHUNK) < 0.05


def test_missing_checkpoint_serves_resampled_48k(plugin_env, start_server, tmp_path):
    env, _ = plugin_env
    server = start_server(CONFIG + f'checkpoint = "{tmp_path / "absent"}"\n', env)
    resp = generate(server, format="flac", sample_rate=48000)
    assert resp.status_code == 200
    assert resp.headers["x-super-resolution"] == "resample-fallback"
    samples, rate = decode(resp.content, "flac")
    assert rate == 48000 and abs(len(samples) / rate - 3 * SECONDS_PER_CHUNK) < 0.05
    assert server.wait_event("apbwe.unavailable")
    assert b"sr_fallback" in httpx.get(server.url + "/metrics").content
