"""The live suite runs against a deployed (or `modal serve`d) endpoint, and only when
``MODAL_ENDPOINT_URL`` names it, e.g. https://WORKSPACE--veena-veena-web.modal.run. With
``MODAL_API_KEY`` set, requests carry it as ``Authorization: Bearer``. Knobs:
``MODAL_LIVE_STREAMS`` (concurrent streams, default 8), ``MODAL_LIVE_COLD_START_S`` (the most a
cold start may take, default 600)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest


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
        if resp.status_code != 200:
            return Arrival(resp.status_code, resp.headers, times or [t0], b"".join(parts), t0)
    return Arrival(resp.status_code, resp.headers, times, b"".join(parts), t0)


@pytest.fixture(scope="session")
def endpoint() -> Iterator[Endpoint]:
    url = os.environ.get("MODAL_ENDPOINT_URL")
    if not url:
        pytest.skip("MODAL_ENDPOINT_URL is not set: the live suite needs a deployed endpoint "
                    "(modal deploy modal_app.py; see docs/deploy.md)")
    key = os.environ.get("MODAL_API_KEY")
    yield Endpoint(url.rstrip("/"), {"Authorization": f"Bearer {key}"} if key else {})
