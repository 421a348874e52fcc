"""Soak: mixed load against a real `veena serve` for a given number of minutes (issue 14).

Formats, text lengths, whole and streamed bodies, clients that leave (before the headers,
after the first bytes, mid-stream) and keys (valid, wrong, missing) are mixed at random, at a
fixed concurrency. Every ``--every`` seconds the server's RSS, open file descriptors and
threads are sampled from /proc, with the window's p95 time to first byte (whole reads only),
its requests and its errors. Time to first byte is of streamed responses read whole (a
whole-body response's first byte comes after all its synthesis). Writes the series as CSV and a PNG plot, and prints a summary
whose verdict compares the second half of the run after warm-up with the first.

    .venv/bin/python tests/performance/bench_soak.py --minutes 20 --out docs/img/soak

The server runs the code importable as ``veena`` (this checkout, or ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httptools
import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm", "mulaw"]
SENTENCE = "The committee met on Tuesday, and after a long debate it approved the new budget. "
LENGTHS = {"short": 1, "medium": 5, "long": 18}  # sentences: ~85, ~420, ~1,500 characters
BEHAVIOURS = [("whole", 0.55), ("before_headers", 0.15), ("after_first", 0.15), ("mid", 0.15)]
KEYS = [("valid", 0.9), ("wrong", 0.05), ("none", 0.05)]


def pick(weighted: list[tuple[str, float]]) -> str:
    return random.choices([k for k, _ in weighted], [w for _, w in weighted])[0]


@dataclass
class Window:
    """What the clients saw since the last sample."""

    requests: int = 0
    completed: int = 0
    cut: int = 0
    refused: int = 0  # the 401s asked for (wrong or missing key)
    errors: int = 0  # anything unexpected: 5xx, a broken whole body, a refused connection
    ttfb: list[float] = field(default_factory=list)


STATUSES: dict[str, int] = {}
"""Every outcome of the run (status, or what went wrong), for the summary."""


def tally(what: str) -> None:
    STATUSES[what] = STATUSES.get(what, 0) + 1


class _Parse:
    def __init__(self) -> None:
        self.first: float | None = None
        self.headers_done = False
        self.size = 0
        self.complete = False

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        if self.first is None:
            self.first = time.perf_counter()
        self.size += len(body)

    def on_message_complete(self) -> None:
        self.complete = True


async def one(port: int, secret: str, window: list[Window]) -> None:
    fmt, length = random.choice(FORMATS), random.choice(list(LENGTHS))
    behaviour, key = pick(BEHAVIOURS), pick(KEYS)
    payload = {"text": SENTENCE * LENGTHS[length], "format": fmt,
               "stream": behaviour != "whole" or random.random() < 0.7}
    body = json.dumps(payload).encode()
    auth = {"valid": f"Authorization: Bearer {secret}\r\n", "wrong": "Authorization: Bearer "
            "vk_wrong_0000000000000000000000000000\r\n", "none": ""}[key].encode()
    head = (b"POST /v1/tts/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            b"application/json\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n"
            % (auth, len(body)))
    w = window[0]
    w.requests += 1
    t0 = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        w.errors += 1
        tally(type(exc).__name__)
        return
    parse = _Parse()
    parser = httptools.HttpResponseParser(parse)
    try:
        writer.write(head + body)
        if behaviour == "before_headers":
            await asyncio.sleep(random.uniform(0, 0.05))
            window[0].cut += 1
            return
        reads, limit = 0, (1 if behaviour == "after_first" else random.randint(2, 12))
        while not parse.complete:
            data = await asyncio.wait_for(reader.read(16384), 120)
            if not data:
                break
            parser.feed_data(data)
            if parse.headers_done and parser.get_status_code() != 200:
                continue  # an error body: read it whole
            if parse.size and behaviour != "whole":
                reads += 1
                if reads >= limit:
                    window[0].cut += 1
                    return
        status = parser.get_status_code() if parse.headers_done else 0
        tally(f"{status} {key} {'complete' if parse.complete else 'short'}")
        w = window[0]
        if key != "valid":
            if status == 401:
                w.refused += 1
            else:
                w.errors += 1
        elif status == 200 and parse.complete and parse.size:
            w.completed += 1
            if behaviour == "whole" and payload["stream"] and parse.first is not None:
                w.ttfb.append(parse.first - t0)
        elif behaviour != "whole" and status == 200:
            w.cut += 1  # the audio ended before the planned cut (a short text)
        else:
            w.errors += 1
    except (OSError, asyncio.TimeoutError, httptools.HttpParserError) as exc:
        window[0].errors += 1
        tally(type(exc).__name__)
    finally:
        writer.transport.abort()  # a reset, as a client that goes away sends


async def load(port: int, secret: str, concurrency: int, until: float,
               window: list[Window]) -> None:
    async def worker() -> None:
        while time.monotonic() < until:
            await one(port, secret, window)
    await asyncio.gather(*[worker() for _ in range(concurrency)])


def proc_stats(pid: int) -> tuple[float, int, int]:
    """RSS (MB), open file descriptors, threads of ``pid``."""
    rss = threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss / 1024, len(os.listdir(f"/proc/{pid}/fd")), threads


def p95(values: list[float]) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=20, method="inclusive")[18]


async def sample(pid: int, url: str, every: float, until: float, window: list[Window],
                 rows: list[dict]) -> None:
    t_start = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as client:
        while time.monotonic() < until:
            await asyncio.sleep(every)
            w, window[0] = window[0], Window()
            rss, fds, threads = proc_stats(pid)
            active = (await client.get(url + "/v1/tts/health")).json().get("active_streams")
            p = p95(w.ttfb)
            rows.append({"t_s": round(time.monotonic() - t_start, 1), "rss_mb": round(rss, 1),
                         "fds": fds, "threads": threads, "active_streams": active,
                         "requests": w.requests, "completed": w.completed, "cut": w.cut,
                         "refused_401": w.refused, "errors": w.errors,
                         "p95_ttfb_ms": round(p * 1000, 1) if p is not None else "",
                         "whole_reads": len(w.ttfb)})
            r = rows[-1]
            print(f"{r['t_s']:7.0f}s rss {rss:6.1f} MB fds {fds:3d} threads {threads:3d} "
                  f"req {w.requests:4d} ok {w.completed:4d} cut {w.cut:4d} 401 {w.refused:3d} "
                  f"err {w.errors:2d} p95 {r['p95_ttfb_ms']} ms", flush=True)


def start_server(port: int, data: Path) -> subprocess.Popen:
    env = {**os.environ, "VEENA_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "veena.platform.cli"]
    secret = subprocess.run([*cmd, "keys", "create", "--owner", "soak", "--rpm", "1000000",
                             "--streams", "1000"], env=env, check=True,
                            capture_output=True, text=True, timeout=60).stdout.strip()
    log = open(data.parent / "server.log", "wb")
    proc = subprocess.Popen([*cmd, "serve", "--port", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/tts/health", timeout=1).status_code == 200:
                proc.secret = secret  # type: ignore[attr-defined]
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


def plot(rows: list[dict], path: Path, warm_up_s: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] / 60 for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    axes[0].plot(t, [r["rss_mb"] for r in rows], label="RSS (MB)")
    axes[0].set_ylabel("RSS (MB)")
    ax = axes[0].twinx()
    ax.plot(t, [r["fds"] for r in rows], color="tab:orange", label="open fds")
    ax.set_ylabel("open fds")
    axes[0].set_ylim(bottom=0)
    ax.set_ylim(bottom=0)
    axes[1].plot(t, [r["p95_ttfb_ms"] if r["p95_ttfb_ms"] != "" else None for r in rows],
                 color="tab:green")
    axes[1].set_ylabel("p95 TTFB (ms)")
    axes[1].set_ylim(bottom=0)
    axes[2].plot(t, [r["requests"] for r in rows], label="requests")
    axes[2].plot(t, [r["cut"] for r in rows], label="cut by the client")
    axes[2].plot(t, [r["errors"] for r in rows], label="errors", color="tab:red")
    axes[2].set_ylabel("per sample")
    axes[2].set_xlabel("minutes")
    axes[2].legend(loc="upper right", fontsize=8)
    for a in axes:
        a.axvline(warm_up_s / 60, color="grey", linestyle=":", linewidth=1)
        a.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def summary(rows: list[dict], warm_up_s: float) -> dict:
    after = [r for r in rows if r["t_s"] >= warm_up_s]
    half = len(after) // 2
    first, second = after[:half], after[half:]

    def med(rs: list[dict], key: str) -> float:
        vals = [r[key] for r in rs if r[key] != ""]
        return round(statistics.median(vals), 1) if vals else 0.0
    rss = [r["rss_mb"] for r in after]
    return {
        "minutes": round(rows[-1]["t_s"] / 60, 1), "samples": len(rows),
        "requests": sum(r["requests"] for r in rows),
        "completed": sum(r["completed"] for r in rows), "cut": sum(r["cut"] for r in rows),
        "refused_401": sum(r["refused_401"] for r in rows),
        "errors": sum(r["errors"] for r in rows),
        "rss_mb_after_warm_up": [min(rss), max(rss)],
        "rss_mb_median_halves": [med(first, "rss_mb"), med(second, "rss_mb")],
        "fds_max": max(r["fds"] for r in rows), "fds_last": rows[-1]["fds"],
        "threads_max": max(r["threads"] for r in rows),
        "p95_ttfb_ms_median_halves": [med(first, "p95_ttfb_ms"), med(second, "p95_ttfb_ms")],
        "p95_ttfb_ms_worst_window": max((r["p95_ttfb_ms"] for r in after
                                         if r["p95_ttfb_ms"] != ""), default=0.0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=6)
    ap.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--warm-up", type=float, default=120.0, help="seconds left out of the verdict")
    ap.add_argument("--out", default="soak", help="path prefix of the .csv and .png")
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()
    random.seed(args.seed)

    from tests.support.services import free_port

    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="veena-soak-"))
    proc = start_server(port, tmp / "data")
    rows: list[dict] = []
    try:
        until = time.monotonic() + args.minutes * 60
        window = [Window()]

        async def run() -> None:
            await asyncio.gather(
                load(port, proc.secret, args.concurrency, until, window),  # type: ignore[attr-defined]
                sample(proc.pid, f"http://127.0.0.1:{port}", args.every, until, window, rows))
        asyncio.run(run())
        time.sleep(3)
        rss, fds, threads = proc_stats(proc.pid)
        health = httpx.get(f"http://127.0.0.1:{port}/v1/tts/health", timeout=10).json()
    finally:
        proc.terminate()
        proc.wait(60)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = summary(rows, args.warm_up)
    result["outcomes"] = dict(sorted(STATUSES.items()))
    result["idle_after"] = {"rss_mb": round(rss, 1), "fds": fds, "threads": threads,
                            "active_streams": health.get("active_streams")}
    plot(rows, out.with_suffix(".png"), args.warm_up,
         f"veena serve soak: {args.concurrency} clients, mixed formats/lengths/cuts/keys, "
         f"{result['minutes']} min ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
