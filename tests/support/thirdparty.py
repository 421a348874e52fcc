"""A throwaway third-party distribution, ``veena-percent``, built into a real wheel.

Its entry point (``percent`` in the ``veena`` group) registers a normalizer that reads "%" as
"per cent", a silent synthesizer ``quiet``, a codec ``s8`` (signed 8-bit raw PCM), an HTTP route
``GET /v1/percent/{value:int}``, a WebSocket route ``/v1/percent/ws`` and a CLI command
``veena percent``. Installed with ``pip install --target`` into a
folder that only subprocesses given it on ``PYTHONPATH`` see.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PLUGIN = '''
import numpy as np
from litestar import Request, get, websocket
from litestar.connection import WebSocket

from veena.platform.audio import PCM
from veena.platform.hookspecs import hookimpl


class Percent:
    name = "percent"

    def normalize(self, text, job):
        return text.replace("%", " per cent")


class Quiet:
    """A silent voice, so these tests need no real one."""

    name = "quiet"
    sample_rate = 16000

    async def stream(self, job):
        for i, _ in enumerate(job.chunks):
            job.mark_chunk_started(i)
            yield PCM(np.zeros(160, dtype="int16"), self.sample_rate)


class S8Encoder:
    def encode(self, block):
        if block.sample_rate != self.rate:
            raise ValueError("s8 does not resample")
        return (block.samples >> 8).astype("int8").tobytes()

    def finish(self):
        return b""


class S8:
    """Signed 8-bit raw PCM at the voice's rate."""

    name = "s8"
    media_type = "audio/x-s8"
    aliases = ("pcm_s8",)
    sample_rates = (16000, 22050)
    default_sample_rate = None

    def check_bitrate(self, sample_rate, bitrate):
        if bitrate is not None:
            raise ValueError("s8 has no bitrate")

    def open(self, sample_rate, *, streaming, bitrate=None):
        if sample_rate not in self.sample_rates:
            raise ValueError(f"s8 cannot be sent at {sample_rate} Hz")
        encoder = S8Encoder()
        encoder.rate = sample_rate
        return encoder


@get("/v1/percent/{value:int}")
async def percent_route(request: Request, value: int) -> dict:
    normalizer = request.app.state.runtime.normalizers.get("percent")
    return {"spoken": normalizer.normalize(f"{value}%", None)}


@websocket("/v1/percent/ws")
async def percent_socket(socket: WebSocket) -> None:
    await socket.accept()
    async for text in socket.iter_data():
        await socket.send_text(Percent().normalize(text, None))


def percent_command(args):
    print(Percent().normalize(args.text, None))
    return 7 if args.text == "exit7" else 0


@hookimpl
def veena_register_routes(runtime):
    return [percent_route, percent_socket]


@hookimpl
def veena_register_commands(subparsers):
    p = subparsers.add_parser("percent", help="Reads %% signs as words.")
    p.add_argument("text")
    p.set_defaults(func=percent_command)


@hookimpl
def veena_register_codecs(runtime):
    return [S8()]


@hookimpl
def veena_register_normalizers(runtime):
    return [Percent()]


@hookimpl
def veena_register_synthesizers(runtime):
    return [Quiet()]
'''
PYPROJECT = '''
[build-system]
requires = ["setuptools>=75"]
build-backend = "setuptools.build_meta"

[project]
name = "veena-percent"
version = "1.0"

[project.entry-points.veena]
percent = "veena_percent"

[tool.setuptools]
py-modules = ["veena_percent"]
'''


CONTRACTS = '''
"""The wheel's codec and voice pass veena.testing's contract suites, as a third party runs them."""
import numpy as np
import pytest

from veena.testing.codecs import CodecContract
from veena.testing.synthesizers import SynthesizerContract
from veena_percent import S8, Quiet


class TestS8(CodecContract):
    @pytest.fixture
    def codec(self):
        return S8()

    def decode(self, body, name, sample_rate):
        return np.frombuffer(body, dtype=np.int8) / 128.0, sample_rate


class TestQuiet(SynthesizerContract):
    @pytest.fixture
    def synthesizer(self):
        return Quiet()
'''
"""A test module of the wheel's own, run with pytest where the wheel is installed."""


def build_site(root: Path) -> Path:
    """Builds veena-percent into a wheel under ``root`` and installs it into ``root/site``."""
    src, dist, site = root / "src", root / "dist", root / "site"
    src.mkdir()
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "veena_percent.py").write_text(PLUGIN)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
                   check=True, capture_output=True)
    (wheel,) = dist.glob("veena_percent-1.0-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    return site


