"""A fixture for tests that run torch on CPU: one intra-op thread.

torch's CPU threads spin-wait between small ops; on a small shared machine two of them made a
tiny-model step about 20x slower than one (see plugins/spark Config.threads)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
