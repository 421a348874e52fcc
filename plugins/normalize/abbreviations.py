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
    "Dept": "Department", "Rd": "Road", "Ave": "Avenue", "Apt": "Apartment",
    "vs": "versus", "approx": "approximately", "Approx": "Approximately",
    "e.g": "for example", "i.e": "that is", "E.g": "For example", "I.e": "That is",
    "डॉ": "डॉक्टर", "प्रो": "प्रोफ़ेसर", "श्री": "श्री", "श्रीमती": "श्रीमती", "कि.मी": "किलोमीटर",
    "డా": "డాక్టర్", "ప్రొ": "ప్రొఫెసర్", "శ్రీ": "శ్రీ", "శ్రీమతి": "శ్రీమతి",
}
ENDINGS = {"etc": "et cetera", "Ltd": "Limited", "Pvt": "Private", "Inc": "Incorporated",
           "Co": "Company", "Corp": "Corporation", "Bros": "Brothers", "Jr": "Junior",
           "Sr": "Senior"}
NUMBER_SIGNS = {"No": {"en": "number", "hi": "नंबर", "te": "నంబర్"},
                "Nos": {"en": "numbers", "hi": "नंबर", "te": "నంబర్లు"},
                "no": {"en": "number", "hi": "नंबर", "te": "నంబర్"}}
TITLES = {unicodedata.normalize("NFC", k): unicodedata.normalize("NFC", v)
          for k, v in TITLES.items()}
NO_BREAK = frozenset({*TITLES, *ENDINGS, *NUMBER_SIGNS, "a.m", "p.m", "Rs", "Jan", "Feb", "Mar",
                      "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec", "pp", "cf",
                      "viz", "al", "ca", "approx", "rs", "रु", "रू", "రూ"})
"""Words that, followed by a period, do not end a sentence (the chunker's list too)."""

_BARE_TITLES = ("Dr", "Mr", "Mrs", "Ms", "Prof", "Smt")
_LATIN = lambda words: "|".join(sorted((re.escape(w) for w in words if w.isascii()),  # noqa: E731
                                       key=len, reverse=True))
_INDIC = "|".join(sorted((re.escape(w) for w in TITLES if not w.isascii()), key=len, reverse=True))
_END_OF_SENTENCE = re.compile(r"\s*$|\s+[A-Z\u0900-\u0DFF]")


def _speak(m: re.Match[str], ctx: Context) -> str:
    if word := m.group("abbr_num"):
        return NUMBER_SIGNS[word][ctx.lang]
    if word := m.group("abbr_end"):
        full = ENDINGS[word]
        ends = _END_OF_SENTENCE.match(m.string, m.end())
        return full + "." if ends else full
    word = m.group("abbr_title") or m.group("abbr_bare") or m.group("abbr_indic")
    return TITLES[word]


ABBREVIATION = Rule(
    "abbr",
    rf"(?<![\w.])(?:(?P<abbr_num>Nos|No|no)\. ?(?=\d)"
    rf"|(?P<abbr_end>{_LATIN(ENDINGS)})\."
    rf"|(?P<abbr_title>{_LATIN(TITLES)})\.(?=[\s,;:]|$)"
    rf"|(?P<abbr_bare>{'|'.join(_BARE_TITLES)})(?= [A-Z]))"
    rf"|(?<![\u0900-\u0DFF])(?P<abbr_indic>{_INDIC})\.",
    _speak)
