"""Every error a client can see: a stable code, an HTTP status and a JSON body, built in one place."""

from __future__ import annotations

import re
from typing import Any

import msgspec

ECHO_CHARS = 64
"""Errors quote at most this many characters of a value the client sent."""

OPENAI_TYPES = {401: "authentication_error", 402: "insufficient_quota", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_error"}
"""HTTP status -> OpenAI's error ``type``; other 4xx are ``invalid_request_error``, 5xx
``server_error``."""


def error_type(status: int) -> str:
    """The OpenAI-style ``type`` of an error with this HTTP status."""
    if status in OPENAI_TYPES:
        return OPENAI_TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def echo(value: object, limit: int = ECHO_CHARS) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for quoting client input in errors."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(str(value))} characters)"


class VeenaError(Exception):
    """An error with a stable machine-readable ``code`` that maps to an HTTP status; ``param``
    names the request field at fault, when there is one."""

    def __init__(self, code: str, message: str, status: int = 400, *,
                 headers: dict[str, str] | None = None, param: str | None = None,
                 **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.headers = headers or {}
        self.param = param
        self.details = details

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        """The JSON body sent to clients: ``{"error": {code, message, type, param, ...details}}``
        (``type`` and ``param`` as OpenAI's SDKs read them)."""
        error: dict[str, Any] = {"code": self.code, "message": self.message,
                                 "type": error_type(self.status), "param": self.param,
                                 **self.details}
        if request_id:
            error["request_id"] = request_id
        return {"error": error}


def invalid_choice(code: str, what: str, value: object, choices: list[Any]) -> VeenaError:
    """A 400 for a value outside a fixed set, listing the valid choices; ``what`` is also the
    ``param``. The value is quoted cut to ``ECHO_CHARS``."""
    return VeenaError(code, f"unknown {what} {echo(value)}", 400, param=what,
                      valid=sorted(choices, key=str))


class ConfigError(Exception):
    """Bad configuration found at start-up; the message names the offending key."""


def config_error(exc: msgspec.ValidationError, where: str) -> ConfigError:
    """Turns msgspec's "... - at `$.a.b`" into a message naming the dotted TOML key."""
    msg, path = str(exc), where.rstrip(".")
    located = re.search(r" - at `\$(.*)`$", msg)
    if located:
        msg = msg[:located.start()]
        path = (where + located.group(1).lstrip(".")).rstrip(".")
    unknown = re.match(r"Object contains unknown field `(.+)`", msg)
    if unknown:
        path, msg = (f"{path}.{unknown.group(1)}" if path else unknown.group(1)), "unknown key"
    return ConfigError(f"invalid configuration: `{path or 'top level'}`: {msg}")
