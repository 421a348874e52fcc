"""Veena3 through the real HTTP server on a GPU: time to first audio byte, real-time factor per
stream and audio seconds per GPU second, at several concurrency levels, per engine.

    python tests/performance/bench_spark_http.py [--ckpt DIR] [--engines torch,hf]
        [--levels 1,8,32,64] [--baseline-levels 1,8] [--tokens 250] [--client raw|httpx]
        [--slots 256] [--spark first_block=4 ...] [--label new] [--json out.json]

An engine may name the BiCodec dtype too: ``--engines torch,torch:bfloat16,hf``. ``--slots``
sets the torch engine's KV-cache slots (streams decoded together; default 64); each ``--spark``
adds one ``[plugins.spark]`` setting (a TOML value); ``--label`` prefixes the printed engine name
(for A/B runs of two checkouts) and ``--json`` appends every row to a file.

Builds (or reuses) a full-size random checkpoint and a voice with pinned global tokens (so the
first audio needs no global-token phase), then for each engine starts ``veena serve`` on
loopback and sends N concurrent streaming ``pcm`` requests of a fixed ``max_tokens`` each
(random weights rarely pick a stop token, so nearly every request yields the same audio length;
the real length is what is counted). Per level it prints time to first audio byte p50/p95, the
real-time factor (request time / audio time) p50 and worst, audio seconds per wall second, and
GPU memory in use. The ``hf`` baseline (plain Hugging Face decoding, one request per step) runs
only at ``--baseline-levels``: at 64 streams it needs minutes per level.

The client is ``raw`` (``raw_client.py``, one connection a request, httptools parsing) unless
``--client httpx``: with 64 streams httpx's own event loop added 50-80 ms to the p95 that the
server's log did not show.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.conftest import Server  # noqa: E402
from tests.performance.raw_client import post  # noqa: E402

TEXT = "Veena speaks Hindi, Telugu and English, and streams audio while it is being generated."
PINNED = [(37 * i + 11) % 4096 for i in range(32)]
BYTES_PER_SECOND = 16000 * 2


class GpuServer(Server):
    def _wait(self, timeout: float = 900.0) -> None:  # model load and CUDA graph capture
        super()._wait(timeout)


def write_voice(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.toml").write_text(
        'name = "bench"\nlanguages = ["hi", "te", "en"]\ngender = "female"\n'
        'description = "Benchmark voice with pinned global tokens"\n'
        '[synthesizers.espeak]\nvoice = "en-us"\n'
        '[synthesizers.spark]\ntask = "controllable_tts"\n'
        'control = ["<|gender_0|>", "<|pitch_label_3|>", "<|speed_label_3|>"]\n'
        f"global_tokens = {PINNED}\n")
    return folder


def _body(tokens: int, seed: int) -> dict:
    return {"text": TEXT, "speaker": "bench", "format": "pcm", "max_tokens": tokens,
            "seed": seed, "normalize": False}


async def one(client: httpx.AsyncClient, tokens: int, seed: int) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    ttfb, size = None, 0
    async with client.stream("POST", "/v1/tts/generate", json=_body(tokens, seed)) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {(await r.aread())[:300]!r}")
        async for chunk in r.aiter_raw():
            if ttfb is None and chunk:
                ttfb = time.perf_counter() - t0
            size += len(chunk)
    return ttfb or float("nan"), time.perf_counter() - t0, size


async def one_raw(url: str, tokens: int, seed: int) -> tuple[float, float, int]:
    address = urlsplit(url)
    r = await post(address.hostname, address.port, "/v1/tts/generate", _body(tokens, seed))
    if not r.ok:
        raise RuntimeError(f"status {r.status}, {r.size} bytes, complete {r.complete}")
    return r.ttfb, r.total, r.size


async def level(url: str, n: int, tokens: int, client: str = "raw") -> dict:
    if client == "raw":
        await one_raw(url, tokens, 0)  # warm-up
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one_raw(url, tokens, i) for i in range(n)))
        wall = time.perf_counter() - t0
    else:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as http:
            await one(http, tokens, 0)  # warm the connection pool
            t0 = time.perf_counter()
            results = await asyncio.gather(*(one(http, tokens, i) for i in range(n)))
            wall = time.perf_counter() - t0
    ttfb = sorted(r[0] * 1000 for r in results)
    audio = [r[2] / BYTES_PER_SECOND for r in results]
    rtf = sorted(r[1] / a for r, a in zip(results, audio) if a > 0)
    return {"streams": n, "ttfb p50 ms": statistics.median(ttfb),
            "ttfb p95 ms": ttfb[min(n - 1, round(0.95 * (n - 1)))],
            "rtf p50": statistics.median(rtf), "rtf worst": rtf[-1],
            "audio s": sum(audio), "audio s per s": sum(audio) / wall,
            "gpu MiB": gpu_memory_mib()}


def server_ttfb(log: Path, n: int) -> tuple[float, float]:
    """p50/p95 of the server's own time to first byte (request received -> first audio bytes
    handed to the server) over the last ``n`` requests in its log."""
    values = []
    for line in log.read_text().splitlines():
        if '"tts.first_audio_emitted"' in line:
            values.append(json.loads(line)["ttfb_ms"])
    values = sorted(values[-n:])
    return statistics.median(values), values[min(n - 1, round(0.95 * (n - 1)))]


def gpu_memory_mib() -> int:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
        return int(out.split()[0])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return -1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", type=Path, default=None)
    ap.add_argument("--engines", default="torch,hf")
    ap.add_argument("--levels", default="1,8,32,64")
    ap.add_argument("--baseline-levels", default="1,8")
    ap.add_argument("--tokens", type=int, default=250)
    ap.add_argument("--client", choices=["raw", "httpx"], default="raw")
    ap.add_argument("--slots", type=int, default=None)
    ap.add_argument("--spark", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--label", default="")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from veena.plugins.spark.checkpoint import write_random_checkpoint

    work = Path(tempfile.mkdtemp(prefix="veena-bench-"))
    ckpt = args.ckpt or work / "veena3-full"
    if not (ckpt / "LLM").exists():
        write_random_checkpoint(ckpt, "full")
    voices = write_voice(work / "voices")
    print(f"{'engine':<15}{'streams':>8}{'ttfb p50':>10}{'ttfb p95':>10}{'srv p50':>10}"
          f"{'srv p95':>10}{'rtf p50':>9}"
          f"{'rtf max':>9}{'audio s':>9}{'audio/s':>9}{'GPU MiB':>9}", flush=True)
    for variant in args.engines.split(","):
        engine, _, decoder_dtype = variant.partition(":")  # e.g. "torch:bfloat16"
        extra = [f"slots = {args.slots}"] if args.slots and engine == "torch" else []
        extra += [f"{k.strip()} = {v.strip()}" for k, _, v in (o.partition("=") for o in args.spark)]
        config = (f'[stages]\nsynthesizer = "spark"\n[plugins.spark]\nmodel_path = "{ckpt}"\n'
                  f'engine = "{engine}"\n'
                  + (f'decoder_dtype = "{decoder_dtype}"\n' if decoder_dtype else "")
                  + "".join(line + "\n" for line in extra)
                  + f'[plugins.catalog]\nfolders = ["{voices}"]\n')
        name = f"{args.label}:{variant}" if args.label else variant
        server = GpuServer(config, tmp=work)
        levels = args.levels if engine != "hf" else args.baseline_levels
        try:
            for n in (int(x) for x in levels.split(",")):
                r = asyncio.run(level(server.url, n, args.tokens, args.client))
                s50, s95 = server_ttfb(server.log, n)
                if args.json:
                    with args.json.open("a") as f:
                        f.write(json.dumps({"engine": name, "slots": args.slots, "spark": args.spark,
                                            "server ttfb p50 ms": s50, "server ttfb p95 ms": s95,
                                            **r}) + "\n")
                print(f"{name:<15}{n:>8}{r['ttfb p50 ms']:>10.1f}{r['ttfb p95 ms']:>10.1f}"
                      f"{s50:>10.1f}{s95:>10.1f}"
                      f"{r['rtf p50']:>9.3f}{r['rtf worst']:>9.3f}{r['audio s']:>9.1f}"
                      f"{r['audio s per s']:>9.1f}{r['gpu MiB']:>9}", flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
