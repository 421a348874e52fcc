"""Identifiers of requests and records: 128 random bits as 32 hex characters (as ``uuid4().hex``).

They come from the ``random`` module's generator, which Python seeds from the OS at start and
again in a forked child, not from ``os.urandom``. These identifiers must be unique, not secret
(API keys use ``secrets``), and ``os.urandom`` is a system call that lets go of the GIL: in a
burst of 50 streams the event loop spent 11% of its samples getting the GIL back after
``uuid4()`` (docs/benchmarks.md).
"""

from __future__ import annotations

import random


def new_id() -> str:
    """A fresh 32-character hexadecimal identifier."""
    return f"{random.getrandbits(128):032x}"
