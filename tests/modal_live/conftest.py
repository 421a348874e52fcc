"""The live suite runs against a deployed (or `modal serve`d) endpoint, and only when
``MODAL_ENDPOINT_URL`` names it, e.g. https://WORKSPACE--veena-veena-web.modal.run. With
``MODAL_API_KEY`` set, requests carry it as ``Authorization: Bearer``. Knobs:
``MODAL_LIVE_STREAMS`` (concurrent streams, default 8), ``MODAL_LIVE_COLD_START_S`` (the most a
cold start may take, default 600)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.live import Endpoint


@pytest.fixture(scope="session")
def endpoint() -> Iterator[Endpoint]:
    url = os.environ.get("MODAL_ENDPOINT_URL")
    if not url:
        pytest.skip("MODAL_ENDPOINT_URL is not set: the live suite needs a deployed endpoint "
                    "(modal deploy modal_app.py; see docs/deploy.md)")
    key = os.environ.get("MODAL_API_KEY")
    yield Endpoint(url.rstrip("/"), {"Authorization": f"Bearer {key}"} if key else {})
