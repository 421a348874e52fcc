"""Common abbreviations (Dr., Mr., etc., e.g., डॉ., డా.) -> full words.

``TITLES`` never end a sentence (a name follows); ``ENDINGS`` may, so when one is the last thing
in its sentence its period is kept. The chunker reads ``NO_BREAK`` to avoid splitting after them.
"""

from __future__ import annotations

import re
import unicodedata

from veena.plugins.normalize.rules import Context, Rule

TITLES = {
    "Dr": "Doctor", "Mr": "Mister", "Mrs": "Missus", "Ms": "Miss", "Prof": "Professor",
    "St": "Saint", "Mt": "Mount", "Capt": "Captain", "Col": "Colonel", "Gen": "General",
    "Lt": "Lieutenant", "Sgt": "Sergeant", "Hon": "Honourable", "Smt": "Shrimati", "Sh": "Shri",
    "Shri": "Shri", "Fig": "Figure", "Vol": "Volume", "Ch": "Chapter", "Govt": "Government",
    "Dept": "Department", "Rd": "Road", "Ave": "Avenue", "Apt": "Apartment", "Pvt": "Private",
    "vs": "versus", "approx": "approximately", "Approx": "Approximately",
    "e.g": "for example", "i.e": "that is", "E.g": "For example", "I.e": "That is",
    "डॉ": "डॉक्टर", "प्रो": "प्रोफ़ेसर", "श्री": "श्री", "श्रीमती": "श्रीमती", "कि.मी": "किलोमीटर",
    "డా": "డాక్టర్", "ప్రొ": "ప్రొఫెసర్", "శ్రీ": "శ్రీ", "శ్రీమతి": "శ్రీమతి",
}
ENDINGS = {"etc": "et cetera", "Ltd": "Limited", "Inc": "Incorporated",
           "Co": "Company", "Corp": "Corporation", "Bros": "Brothers", "Jr": "Junior",
           "Sr": "Senior"}
NUMBER_SIGNS = {"No": {"en": "number", "hi": "नंबर", "te": "నంబర్"},
                "Nos": {"en": "numbers", "hi": "नंबर", "te": "నంబర్లు"},
                "no": {"en": "number", "hi": "नंबर", "te": "నంబర్"},
                "नं": {"en": "number", "hi": "नंबर", "te": "నంబర్"}}
TITLES = {unicodedata.normalize("NFC", k): unicodedata.normalize("NFC", v)
          for k, v in TITLES.items()}
NO_BREAK = frozenset({*TITLES, *ENDINGS, *NUMBER_SIGNS, "a.m", "p.m", "Rs", "Jan", "Feb", "Mar",
                      "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec", "pp", "cf",
                      "viz", "al", "ca", "approx", "rs", "रु", "रू", "రూ"})
"""Words that, followed by a period, do not end a sentence (the chunker's list too)."""

_END_OF_SENTENCE = re.compile(r"\s*$|\s+[A-Z\u0900-\u0DFF]")
_WORD_BEFORE = re.compile(r"[\w.\u0900-\u0DFF]+$")


def _after(words) -> str:
    r"""``\.`` then a lookbehind per word length (Python needs fixed-width lookbehinds): the rule
    is anchored on the period, so the regex engine only stops at periods."""
    by_len: dict[int, list[str]] = {}
    for w in words:
        by_len.setdefault(len(w), []).append(re.escape(w))
    return "|".join(f"(?<=(?<![\\w\u0900-\u0DFF])(?:{'|'.join(sorted(ws))})\\.)"
                    for _, ws in sorted(by_len.items(), reverse=True))


def _speak(m: re.Match[str], ctx: Context, last: int) -> tuple[str, int] | None:
    before = _WORD_BEFORE.search(m.string, max(last, m.start() - 12), m.start())
    if before is None:
        return None
    word = before.group()
    if m.group("abbr_num") is not None:
        return NUMBER_SIGNS[word][ctx.lang], before.start()
    if m.group("abbr_end") is not None:
        ends = _END_OF_SENTENCE.match(m.string, m.end())
        return ENDINGS[word] + ("." if ends else ""), before.start()
    full = TITLES.get(word)
    return (full, before.start()) if full else None


ABBREVIATION = Rule(
    "abbr",
    rf"\.(?:(?P<abbr_num>{_after(NUMBER_SIGNS)})(?= ?\d)|(?P<abbr_end>{_after(ENDINGS)})"
    rf"|(?P<abbr_title>{_after(TITLES)})(?=[\s,;:]|$))",
    _speak, back=True)
