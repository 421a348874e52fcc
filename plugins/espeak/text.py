"""Turning a job's chunks into engine work items: clause splitting and per-item voice choice.

eSpeak NG builds its prosody clause by clause (a clause ends at ``, ; : . ? !``), and with
``espeakENDPAUSE`` a clause synthesized on its own keeps its pause and its tune when the
punctuation stays attached. So splitting a sentence after a clause's punctuation changes the
audio no more than eSpeak's own clause loop does; splitting inside a clause (only for text with
no punctuation for ``max_chars``) adds a short pause there.
"""

from __future__ import annotations

import re
import unicodedata

_CLAUSE_END = re.compile(r"(?<=[,;:،、，；：])\s+")

# Indic blocks are 128 code points each, from U+0900: the eSpeak NG language reading each.
_INDIC = ("hi", "bn", "pa", "gu", "or", "ta", "te", "kn", "ml")
_NATIVE = {"hi": "hi", "mr": "hi", "ne": "hi", "sa": "hi", "kok": "hi", "bn": "bn", "as": "bn",
           "pa": "pa", "gu": "gu", "or": "or", "ta": "ta", "te": "te", "kn": "kn", "ml": "ml"}


def clean(text: str) -> str:
    """Control and format characters become spaces (eSpeak NG reads some aloud, NUL ends the
    string); runs of whitespace collapse. Emoji and other symbols are left to eSpeak NG."""
    if text.isprintable():
        return " ".join(text.split())
    out = "".join(" " if unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") else ch
                  for ch in text)
    return " ".join(out.split())


def clean_positions(text: str) -> list[int]:
    """For each character of ``clean(text)``, its index in ``text``."""
    out: list[int] = []
    space = True  # at the start, or after a space already written: skip whitespace
    for i, ch in enumerate(text):
        blank = ch.isspace() or (not ch.isprintable() and unicodedata.category(ch) in
                                 ("Cc", "Cs", "Co", "Cn"))
        if blank:
            if not space:
                out.append(i)
                space = True
        else:
            out.append(i)
            space = False
    if out and space:  # a trailing space
        out.pop()
    return out


def item_offsets(cleaned: str, items: list[str]) -> list[int]:
    """Where each of ``items`` (``split_items`` of a chunk, in order) starts in ``cleaned``."""
    offsets, at = [], 0
    for item in items:
        found = cleaned.find(item, at)
        at = found if found >= 0 else at
        offsets.append(at)
        at += len(item)
    return offsets


def _hard_split(text: str, max_chars: int) -> list[str]:
    out = []
    while len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars + 1)
        cut = cut if cut > 0 else max_chars
        out.append(text[:cut].strip())
        text = text[cut:].strip()
    if text:
        out.append(text)
    return out


def split_items(chunk: str, max_chars: int) -> list[str]:
    """``chunk`` as pieces of at most ``max_chars``, cut after clause punctuation where needed:
    whole clauses are merged back up to ``max_chars``; a longer clause is cut at whitespace."""
    text = clean(chunk)
    if not text:
        return []
    clauses = [p for c in _CLAUSE_END.split(text) for p in _hard_split(c, max_chars)]
    items: list[str] = []
    current = ""
    for clause in clauses:
        if current and len(current) + 1 + len(clause) > max_chars:
            items.append(current)
            current = clause
        else:
            current = f"{current} {clause}" if current else clause
    if current:
        items.append(current)
    return items


def dominant_indic_language(text: str) -> str | None:
    """The eSpeak NG language of the Indic script most letters of ``text`` are in, if Indic
    letters outnumber Latin ones; None otherwise."""
    counts = [0] * len(_INDIC)
    latin = 0
    for ch in text:
        o = ord(ch)
        if 0x0900 <= o < 0x0D80:
            counts[(o - 0x0900) >> 7] += 1
        elif o < 0x80 and ch.isalpha():
            latin += 1
    best = max(range(len(_INDIC)), key=counts.__getitem__)
    return _INDIC[best] if counts[best] > latin else None


def split_voice(voice: str) -> tuple[str, str]:
    """``"hi+f3"`` -> ``("hi", "+f3")``; ``"en-us"`` -> ``("en-us", "")``."""
    lang, plus, variant = voice.partition("+")
    return lang, plus + variant


def voice_for(text: str, voice: str) -> str:
    """The voice to read ``text`` with: ``voice``, unless the text is mostly in an Indic script
    the voice's language does not read natively (eSpeak NG would spell it letter by letter, e.g.
    Telugu with ``hi``); then that script's language with the same variant (``te+f3``).
    Devanagari and Latin are left alone: every voice here switches to Hindi or English itself."""
    lang, variant = split_voice(voice)
    script_lang = dominant_indic_language(text)
    if script_lang is None or script_lang == "hi":
        return voice
    if _NATIVE.get(lang.lower().split("-")[0]) == script_lang:
        return voice
    return script_lang + variant
