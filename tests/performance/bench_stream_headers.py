"""Which unknown-length header conventions the readers people use handle, for streamed WAV and FLAC.

Each variant is the real encoder's streamed output (3.000 s of a tone at 24 kHz) with its size
fields set one way; every reader reports the frames it sees up front and the frames it decodes.
Prints a table; the README's "Streamed WAV and FLAC" note is decided by it. The browsers
(Debian's ``chromium`` and ``firefox-esr``, headless, where installed) load a page from a loopback
server that reads each variant with an ``<audio>`` element (its ``duration`` is what they are
told up front) and ``decodeAudioData`` at 24 kHz (what they decode), and posts the results back.

    .venv/bin/python tests/performance/bench_stream_headers.py
"""

from __future__ import annotations

import http.server
import io
import json
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import wave
from pathlib import Path

import numpy as np

from veena.codecs.catalog import CODECS
from veena.platform.audio import PCM

RATE, SECONDS = 24000, 3.0
FRAMES = int(RATE * SECONDS)


def _streamed(name: str) -> bytes:
    codec = next(c for c in CODECS if c.name == name)
    t = np.arange(FRAMES) / RATE
    samples = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    enc = codec.open(RATE, streaming=True)
    out = [enc.encode(PCM(samples[i:i + 960], RATE)) for i in range(0, FRAMES, 960)]
    return b"".join(out) + enc.finish()


def _whole(name: str) -> bytes:
    codec = next(c for c in CODECS if c.name == name)
    t = np.arange(FRAMES) / RATE
    enc = codec.open(RATE, streaming=False)
    return enc.encode(PCM((8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), RATE)) + enc.finish()


def _wav_sizes(data: bytes, riff: int, chunk: int) -> bytes:
    return data[:4] + struct.pack("<I", riff) + data[8:40] + struct.pack("<I", chunk) + data[44:]


def variants() -> dict[str, bytes]:
    wav = _streamed("wav")
    flac = _streamed("flac")
    return {
        "wav 0xFFFFFFFF (RIFF, data)": wav,
        "wav 0 (RIFF, data)": _wav_sizes(wav, 0, 0),
        "wav 0xFFFFFFFE (even max)": _wav_sizes(wav, 0xFFFFFFFE, 0xFFFFFFFE - 36),
        "wav 0x7FFFF000 (ffmpeg-pipe style)": _wav_sizes(wav, 0x7FFFF024, 0x7FFFF000),
        "flac total_samples=0 (streamed)": flac,
        "flac whole body (stream: false)": _whole("flac"),
    }


def _python_wave(path: Path) -> tuple[str, str]:
    try:
        with wave.open(str(path)) as w:
            told = w.getnframes()
            got = len(w.readframes(told)) // 2
        return str(told), str(got)
    except Exception as exc:  # noqa: BLE001 - a reader's failure is the measurement
        return "error", type(exc).__name__


def _soundfile(path: Path) -> tuple[str, str]:
    import soundfile

    try:
        told = soundfile.info(str(path)).frames
    except Exception as exc:  # noqa: BLE001
        return "error", type(exc).__name__
    try:
        got = len(soundfile.read(str(path), dtype="int16")[0])
    except Exception as exc:  # noqa: BLE001
        return str(told), f"read() {type(exc).__name__}; blocks {_soundfile_blocks(path)}"
    return str(told), str(got)


def _soundfile_blocks(path: Path) -> str:
    import soundfile

    got = 0
    try:
        with soundfile.SoundFile(str(path)) as f:
            while block := len(f.read(4096, dtype="int16")):
                got += block
    except Exception as exc:  # noqa: BLE001
        return f"{got} then {type(exc).__name__}"
    return str(got)


def _sox(path: Path) -> tuple[str, str]:
    if not shutil.which("sox"):
        return "n/a", "n/a"
    told = subprocess.run(["soxi", "-s", str(path)], capture_output=True, text=True).stdout.strip()
    raw = subprocess.run(["sox", str(path), "-t", "raw", "-e", "signed", "-b", "16", "-"],
                         capture_output=True).stdout
    return told or "error", str(len(raw) // 2)


def _ffmpeg(path: Path) -> tuple[str, str]:
    if not shutil.which("ffmpeg"):
        return "n/a", "n/a"
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                            "-of", "csv=p=0", str(path)], capture_output=True, text=True).stdout
    told = f"{float(probe) * RATE:.0f}" if probe.strip() not in ("", "N/A") else "unknown"
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-"],
                         capture_output=True).stdout
    return told, str(len(raw) // 2)


_PAGE = """<!doctype html><meta charset="utf-8"><script>
const RATE = %(rate)d, N = %(n)d;
async function told(i) {
  const a = new Audio(); a.preload = "metadata";
  return await new Promise(res => {
    a.onloadedmetadata = () => res(isFinite(a.duration) ? Math.round(a.duration * RATE) : String(a.duration));
    a.onerror = () => res("error");
    setTimeout(() => res("timeout"), 5000);
    a.src = "/v/" + i;
  });
}
async function decoded(i) {
  try {
    const body = await (await fetch("/v/" + i)).arrayBuffer();
    const ctx = new OfflineAudioContext(1, 1, RATE);
    return (await ctx.decodeAudioData(body)).length;
  } catch (e) { return "error: " + e.name; }
}
(async () => {
  const out = [];
  for (let i = 0; i < N; i++) out.push([String(await told(i)), String(await decoded(i))]);
  await fetch("/result", {method: "POST", body: JSON.stringify(out)});
})();
</script>"""


def _browser_command(name: str, url: str, profile: str) -> list[str] | None:
    exe = shutil.which(name)
    if exe is None:
        return None
    if name == "chromium":
        return [exe, "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                "--autoplay-policy=no-user-gesture-required", url]
    return [exe, "--headless", "--no-remote", "--profile", profile, url]


def browser_cells(name: str, bodies: list[tuple[str, bytes]]) -> list[tuple[str, str]] | None:
    """What one browser tells and decodes for each body, or None when it is not installed."""
    result: list[list[str]] = []
    done = threading.Event()
    page = (_PAGE % {"rate": RATE, "n": len(bodies)}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.startswith("/v/"):
                mime, data = bodies[int(self.path[3:])]
                self.send_response(200)
                self.send_header("Content-Type", mime)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def do_POST(self) -> None:  # noqa: N802
            result.extend(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()
            done.set()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as profile:
        cmd = _browser_command(name, f"http://127.0.0.1:{server.server_port}/", profile)
        if cmd is None:
            server.shutdown()
            return None
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "MOZ_HEADLESS": "1"})
        try:
            done.wait(90)
        finally:
            proc.kill()
            proc.wait()
            server.shutdown()
    return [(a, b) for a, b in result] if result else [("timeout", "timeout")] * len(bodies)


def main() -> None:
    readers = {"wave": _python_wave, "soundfile": _soundfile, "sox": _sox, "ffmpeg": _ffmpeg}
    cases = variants()
    bodies = [("audio/flac" if n.startswith("flac") else "audio/wav", d) for n, d in cases.items()]
    browsers = {b: cells for b in ("chromium", "firefox-esr")
                if (cells := browser_cells(b, bodies)) is not None}
    print(f"true length: {FRAMES} frames; cells are 'frames told up front / frames decoded'\n")
    print("| variant | " + " | ".join([*readers, *browsers]) + " |")
    print("|---|" + "---|" * (len(readers) + len(browsers)))
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, data) in enumerate(cases.items()):
            path = Path(tmp) / ("x.flac" if name.startswith("flac") else "x.wav")
            path.write_bytes(data)
            cells = [" / ".join(fn(path)) for fn in readers.values()]
            cells += [" / ".join(b[i]) for b in browsers.values()]
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
