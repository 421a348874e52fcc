"""Parsing of requested format names: plain (OpenAI ``response_format``) and ElevenLabs style."""

from __future__ import annotations

import re

_FORMAT = re.compile(r"(?P<name>.+?)(?:_(?P<rate>\d+)(?:_(?P<kbps>\d+))?)?")


def parse_format(name: str) -> tuple[str, int | None, int | None]:
    """(codec or alias name, sample rate, bitrate in bits/s) from a format string.

    ``"mp3"`` -> ``("mp3", None, None)``; ``"mp3_44100_128"`` -> ``("mp3", 44100, 128000)``
    (the last field is kbps); ``"ulaw_8000"`` -> ``("ulaw", 8000, None)``. Names with
    underscores such as ``g711_ulaw`` stay whole. Pure parsing: the caller checks the name
    against the codec registry and the rate against the codec's ``sample_rates``."""
    text = name.strip().lower()
    match = _FORMAT.fullmatch(text)
    if match is None:  # only the empty string
        return text, None, None
    rate, kbps = match["rate"], match["kbps"]
    return match["name"], int(rate) if rate else None, int(kbps) * 1000 if kbps else None
