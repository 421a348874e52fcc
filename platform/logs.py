"""Structured JSON logs: one event a step, ``request_id`` on every line, never user text or keys.

Records are formatted and written by one writer thread (``logging.handlers.QueueListener``):
the event loop only queues them. Writing on the loop made it give up the GIL at every line
(a system call) and wait to get it back behind the worker threads.
"""

from __future__ import annotations

import atexit
import contextvars
import json
import logging
import logging.handlers
import queue
import sys
import time
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, event, request_id and the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class _Enqueue(logging.handlers.QueueHandler):
    """Queues records unformatted, with the request ID of the context that logged them."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return record


_writer: logging.handlers.QueueListener | None = None


def stop_logging() -> None:
    """Writes out the queued records and stops the writer thread."""
    global _writer
    if _writer is not None:
        _writer.stop()
        _writer = None


def configure_logging(level: str = "INFO", stream=None) -> None:
    """Routes the ``veena`` loggers (and uvicorn's) through the JSON formatter, written by a
    writer thread until ``stop_logging`` (called at exit)."""
    global _writer
    stop_logging()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _writer = logging.handlers.QueueListener(records, handler)
    _writer.start()
    enqueue = _Enqueue(records)
    for name in ("veena", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [enqueue]
        logger.setLevel(level)
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True


atexit.register(stop_logging)


_events = logging.getLogger("veena.events")


def event(name: str, **fields: Any) -> None:
    """Logs one pipeline event (``tts.*``) with its timings, sizes and counts."""
    _events.info(name, extra={k: v for k, v in fields.items() if v is not None})


def ms(since: float) -> float:
    """Milliseconds since a ``time.perf_counter()`` reading, rounded for logs."""
    return round((time.perf_counter() - since) * 1000, 2)
