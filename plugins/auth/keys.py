"""API key format, hashing and the request-header parsing, all without I/O.

A key is ``vk_`` followed by 43 URL-safe characters: 32 bytes (256 bits) from ``secrets``.
It is shown once at creation; the store keeps only its SHA-256 (hex). A fast, unsalted hash is
the right tool here, unlike for passwords: with 256 bits of entropy there is nothing to guess
or look up in a table, and a slow hash (bcrypt, scrypt, Argon2) would add milliseconds to every
request that misses the cache without making a random key any harder to find.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Mapping

from veena.platform.db.keys import ApiKey
from veena.platform.errors import VeenaError

KEY_PREFIX = "vk_"
MIN_LEN, MAX_LEN = 20, 200
_ALLOWED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~+/=")


def hash_key(secret: str) -> str:
    """The stored form of a key: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key(owner: str, *, name: str = "", scopes: tuple[str, ...] = ("tts",),
            expires_at: float | None = None, credits: int | None = None,
            rate_per_minute: int | None = None, max_streams: int | None = None) -> tuple[str, ApiKey]:
    """A fresh (secret, record) pair; only the record is ever stored."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(id="key_" + uuid.uuid4().hex[:16], key_hash=hash_key(secret),
                    prefix=secret[:8], owner=owner, name=name, scopes=tuple(scopes),
                    created_at=time.time(), expires_at=expires_at, credits=credits,
                    rate_per_minute=rate_per_minute, max_streams=max_streams)
    return secret, record


def unauthorized(code: str, message: str) -> VeenaError:
    return VeenaError(code, message, 401, headers={"WWW-Authenticate": 'Bearer realm="veena"'})


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key a request presents (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``), None
    when it presents none. Raises 401 ``invalid_api_key`` for a malformed one (checked here,
    so garbage never reaches the store)."""
    auth = headers.get("authorization") or headers.get("Authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise unauthorized("invalid_api_key", "malformed Authorization header: "
                               "expected `Authorization: Bearer <key>`")
        secret = value.strip()
    else:
        secret = (headers.get("x-api-key") or headers.get("X-API-Key") or "").strip()
        if not secret:
            return None
    if not (MIN_LEN <= len(secret) <= MAX_LEN) or not _ALLOWED.issuperset(secret):
        raise unauthorized("invalid_api_key", "malformed API key")
    return secret
