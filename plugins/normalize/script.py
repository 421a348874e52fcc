"""Clean-up and language detection: which language (en, hi, te) a stretch of text is in.

The language of a sentence is the script most of its words are written in (Latin -> English,
Devanagari -> Hindi, Telugu -> Telugu). A sentence with no letters of these scripts (``₹500.``)
takes the request's language hint, else the language of the whole text, else the default.
"""

from __future__ import annotations

import re
import unicodedata

LANGUAGES = ("en", "hi", "te")

_LATIN_WORD = re.compile(r"[A-Za-z\u00C0-\u024F]+")
_DEVANAGARI_WORD = re.compile(r"[\u0900-\u0963\u0971-\u097F\uA8E0-\uA8FF]+")
_TELUGU_WORD = re.compile(r"[\u0C00-\u0C65\u0C70-\u0C7F]+")

NATIVE_DIGITS = str.maketrans({**{chr(0x0966 + i): str(i) for i in range(10)},   # ०-९
                               **{chr(0x0C66 + i): str(i) for i in range(10)}})  # ౦-౯

_EMOJI = re.compile("[\u2600-\u27BF\u2B00-\u2BFF\uFE0E\uFE0F\u20E3\U0001F000-\U0001FAFF]+")
_NEWLINES = re.compile(r" ?\n[\s]*")

_HINTS = {"en": "en", "english": "en", "hi": "hi", "hindi": "hi", "te": "te", "telugu": "te"}


def language_hint(value: str | None) -> str | None:
    """``"hi-IN"``, ``"Hindi"``, ``"te"`` ... -> ``hi``/``te``/``en``; None if unknown."""
    if not value:
        return None
    v = value.strip().lower().replace("_", "-")
    return _HINTS.get(v) or _HINTS.get(v.split("-")[0])


def _drop_char(ch: str) -> str:
    cat = unicodedata.category(ch)
    if cat == "Cc" or ch == "\u200b":  # zero-width space separates words
        return "\n" if ch in "\n\r\x0b\x0c\x1c\x1d\x1e\x85" else " "
    return ""  # Cf (ZWJ, soft hyphen, bidi marks), Cs (lone surrogates), Co, Cn


_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u206f"
                      r"\ufeff\ufff0-\uffff\ud800-\udfff\ue000-\uf8ff]|[\U000f0000-\U0010ffff]")


_ODD_SPACE = re.compile(r"[\t\x0b\x0c\r\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
_SPACE_RUN = re.compile(r"[^\S\n]{2,}|[^\S \n]")
_NATIVE_DIGITS_RE = re.compile("[\u0966-\u096f\u0c66-\u0c6f]+")


_ESCAPES = re.compile(r"(?:\x1b|\^\[)(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]{0,500}(?:\x07|\x1b\\)?"
                      r"|[()][A-Za-z0-9]|[@-Z\\-_])|\x9b[0-?]*[ -/]*[@-~]")
"""Terminal escape sequences (ECMA-48: CSI ``ESC [ ... m``, OSC ``ESC ] ... BEL``, charset and
two-character escapes), also written as ``^[``: colour codes pasted from a terminal."""


def clean(text: str, drop_emoji: bool = True) -> str:
    """NFC, control and format characters out, native digits to ASCII, spaces collapsed.

    Newlines are kept (one at most in a row): they are sentence boundaries for the chunker.
    Each step first checks cheaply whether it has anything to do (50,000 characters in a few
    milliseconds).
    """
    text = text.replace("\r\n", "\n")
    if "\x1b" in text or "^[" in text or "\x9b" in text:
        text = _ESCAPES.sub("", text)
    if _CONTROL.search(text):
        text = _CONTROL.sub(lambda m: "\n" if m.group() == "\n" else _drop_char(m.group()), text)
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
        if drop_emoji:
            text = _EMOJI.sub(" ", text)
        text = _NATIVE_DIGITS_RE.sub(lambda m: m.group().translate(NATIVE_DIGITS), text)
    if "  " in text or _ODD_SPACE.search(text):
        text = _SPACE_RUN.sub(" ", text)
    if "\n" in text:
        text = _NEWLINES.sub("\n", text)
    return text.strip()


NOT_WORDS = frozenset(
    "am pm a m p rs inr usd km kg cm mm ml mg gm gb mb kb tb hz khz mhz ghz kw kwh mah hr hrs "
    "min mins sec secs ms ft lb lbs k l g h v w mph kmph lakh lakhs crore crores cr mn bn st nd "
    "rd th x".split())
"""Latin tokens that go with numbers (units, am/pm, currency codes): typed in Hindi and Telugu
sentences too, so they do not count as English words."""


def word_counts(text: str) -> tuple[int, int, int]:
    """Number of Latin, Devanagari and Telugu words in ``text`` (counted in C with ``subn``;
    the words of ``NOT_WORDS`` are looked for only where there are few Latin words)."""
    latin = _LATIN_WORD.subn("", text)[1]
    if 0 < latin <= 4:
        latin = sum(1 for w in _LATIN_WORD.findall(text) if w.lower() not in NOT_WORDS)
    if text.isascii():
        return latin, 0, 0
    return latin, _DEVANAGARI_WORD.subn("", text)[1], _TELUGU_WORD.subn("", text)[1]


_NATIVE_DIGIT = re.compile("[\u0966-\u096f\u0c66-\u0c6f]")


def digit_language(text: str) -> str | None:
    """``hi`` or ``te`` when ``text`` is written with Devanagari or Telugu digits."""
    m = _NATIVE_DIGIT.search(text)
    return None if m is None else "hi" if m.group() < "\u0a00" else "te"


def dominant(counts: tuple[int, int, int] | list[int]) -> str | None:
    """The language with most words (``word_counts``); ties go to Hindi, then Telugu (an
    Indic word in a short mixed sentence is the stronger signal)."""
    en, hi, te = counts
    if not (en or hi or te):
        return None
    best = max(counts)
    return "hi" if hi == best else "te" if te == best else "en"


_DEVANAGARI_CHAR = re.compile("[\u0900-\u0963\u0971-\u097F\uA8E0-\uA8FF]")
_TELUGU_CHAR = re.compile("[\u0C00-\u0C65\u0C70-\u0C7F]")
_LATIN_CHAR = re.compile("[A-Za-z\u00C0-\u024F]")


_ADDRESS = re.compile(r"[\w.+-]*[A-Za-z0-9][@.][A-Za-z][\w.@/+-]*")


def _has_latin_word(text: str) -> bool:
    return any(w.lower() not in NOT_WORDS for w in _LATIN_WORD.findall(text))


def language_of(text: str) -> str | None:
    """The language of a sentence by its script (None when it has no letters of the three).

    Most sentences are in one script; words are counted only when scripts mix."""
    if text.isascii():
        return "en" if _has_latin_word(text) else None
    dev = _DEVANAGARI_CHAR.search(text) is not None
    tel = _TELUGU_CHAR.search(text) is not None
    lat = _LATIN_CHAR.search(text) is not None
    if dev + tel + lat > 1:  # mixed: count words, not counting addresses (www.veena.ai)
        return dominant(word_counts(_ADDRESS.sub(" ", text) if "." in text else text))
    if lat:
        return "en" if _has_latin_word(text) else None
    return "hi" if dev else "te" if tel else None


def is_indic(ch: str) -> bool:
    return "\u0900" <= ch <= "\u0DFF"
