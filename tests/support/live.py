"""Client helpers of the live suite (tests/modal_live): the endpoint and streamed reads."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Endpoint:
    url: str
    headers: dict[str, str] = field(default_factory=dict)

    def client(self, timeout: float = 150.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout,
                            follow_redirects=True)


@dataclass
class Arrival:
    """A streamed response read chunk by chunk: when each piece came, and the whole body."""

    status: int
    headers: httpx.Headers
    times: list[float]
    body: bytes
    started: float = 0.0

    @property
    def first(self) -> float:
        return self.times[0] - self.started

    @property
    def last(self) -> float:
        return self.times[-1] - self.started


def stream(client: httpx.Client, body: dict, path: str = "/v1/tts/generate") -> Arrival:
    """POSTs ``body`` and reads the answer as it arrives."""
    times, parts = [], []
    t0 = time.perf_counter()
    with client.stream("POST", path, json=body) as resp:
        for piece in resp.iter_raw():
            times.append(time.perf_counter())
            parts.append(piece)
    return Arrival(resp.status_code, resp.headers, times or [t0], b"".join(parts), t0)
