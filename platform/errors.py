"""Every error a client can see: a stable code, an HTTP status and a JSON body, built in one place."""

from __future__ import annotations

from typing import Any


class VeenaError(Exception):
    """An error with a stable machine-readable ``code`` that maps to an HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400, *,
                 headers: dict[str, str] | None = None, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.headers = headers or {}
        self.details = details

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        """The JSON body sent to clients: ``{"error": {code, message, ...details}}``."""
        error: dict[str, Any] = {"code": self.code, "message": self.message, **self.details}
        if request_id:
            error["request_id"] = request_id
        return {"error": error}


def invalid_choice(code: str, what: str, value: object, choices: list[Any]) -> VeenaError:
    """A 400 for a value outside a fixed set, listing the valid choices."""
    return VeenaError(code, f"unknown {what} {value!r}", 400, valid=sorted(choices, key=str))


class ConfigError(Exception):
    """Bad configuration found at start-up; the message names the offending key."""
