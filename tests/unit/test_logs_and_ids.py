"""JSON log lines written by the writer thread, and request/record identifiers."""

import io
import json
import logging
import os

from veena.platform.ids import new_id
from veena.platform.logs import configure_logging, event, request_id_var, stop_logging


def test_events_are_written_by_the_writer_thread_with_their_request_id():
    out = io.StringIO()
    configure_logging(stream=out)
    try:
        token = request_id_var.set("req-123")
        try:
            event("tts.test_event", audio_seconds=1.5, skipped=None)
        finally:
            request_id_var.reset(token)
        logging.getLogger("veena.test").warning("plain %s", "message")
    finally:
        stop_logging()  # writes out what is queued
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["event"] == "tts.test_event" and first["request_id"] == "req-123"
    assert first["audio_seconds"] == 1.5 and "skipped" not in first
    assert second["event"] == "plain message" and second["request_id"] is None
    assert second["level"] == "warning"


def test_ids_are_32_hex_characters_and_unique():
    ids = {new_id() for _ in range(20_000)}
    assert len(ids) == 20_000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_a_forked_child_draws_different_ids():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert len(child) == 32 and child != new_id()
