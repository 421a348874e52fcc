"""The OpenAI speech API's own parts: ``instructions``, SSE events and their ``usage``."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import msgspec

from veena.platform.emotions import canonical
from veena.platform.job import Job
from veena.platform.schemas import MAX_SPEED, MIN_SPEED, GenerateRequest


INSTRUCTION_SPEEDS: tuple[tuple[str, float], ...] = (
    ("very slowly", 0.7), ("very slow", 0.7), ("slowly", 0.85), ("slow", 0.85),
    ("very quickly", 1.4), ("very fast", 1.4), ("quickly", 1.2), ("fast", 1.2),
    ("rapidly", 1.3))
"""Phrases in OpenAI ``instructions`` that name a speaking rate, most specific first."""
_FACTOR = re.compile(r"(?<![\w.])(\d(?:\.\d+)?)\s*(?:x|times)(?!\w)")


def follow_instructions(instructions: str | None, req: GenerateRequest,
                        synthesizer: Any) -> tuple[GenerateRequest, str]:
    """Applies what OpenAI-style ``instructions`` ask that the voice can do, never failing:
    a speaking rate ("slowly", "fast", "1.5x") when the request sets no ``speed``, and a style the synthesizer declares in its ``emotions``
    (canonical names, ``veena.platform.emotions``) as a leading tag. Returns the request and
    what was applied (``speed=0.85``, ``emotion=sad``, or ``none``) for a response header."""
    if not instructions:
        return req, "none"
    text = " ".join(instructions.lower().split())
    applied: list[str] = []
    if req.speed is None:
        found = _FACTOR.search(text)
        speed = float(found.group(1)) if found else next(
            (f for phrase, f in INSTRUCTION_SPEEDS if re.search(rf"\b{phrase}\b", text)), None)
        if speed is not None and MIN_SPEED <= speed <= MAX_SPEED and speed != 1.0:
            req = msgspec.structs.replace(req, speed=speed)
            applied.append(f"speed={speed:g}")
    voiced = getattr(synthesizer, "emotions", ())
    if voiced:
        style = next((c for word in re.findall(r"[a-z]+", text)
                      if (c := canonical(word)) in voiced), None)
        if style is not None:
            req = msgspec.structs.replace(req, text=f"<{style}> {req.text}")
            applied.append(f"emotion={style}")
    return req, ",".join(applied) or "none"


def usage(job: Job) -> dict[str, int]:
    """OpenAI's ``usage`` shape for a finished job: ``input_tokens`` are the characters
    synthesized (this server's billing unit), ``output_tokens`` the audio in 20 ms frames."""
    inputs, outputs = job.chars_delivered, round(job.audio_seconds * 50)
    return {"input_tokens": inputs, "output_tokens": outputs, "total_tokens": inputs + outputs}


async def sse_events(audio: AsyncIterator[bytes], job: Job) -> AsyncIterator[bytes]:
    """OpenAI's speech SSE: a ``speech.audio.delta`` event (base64 audio) per encoded chunk as it
    is made, then ``speech.audio.done`` with ``usage``."""
    async with aclosing(audio):
        async for chunk in audio:
            if chunk:
                yield _event({"type": "speech.audio.delta",
                              "audio": base64.b64encode(chunk).decode("ascii")})
    yield _event({"type": "speech.audio.done", "usage": usage(job)})


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + msgspec.json.encode(data) + b"\n\n"
