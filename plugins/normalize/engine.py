"""Runs every rule in one left-to-right pass, each match spoken in the language of its sentence.

Order of the alternation decides which rule wins where two could start at the same place (an
e-mail before a URL, a phone number before a range, a date before a time before a number).
"""

from __future__ import annotations

import bisect
import logging
import re
import unicodedata

from veena.plugins.normalize import abbreviations, currency, dates, numerals, phones, script, \
    symbols, tags, units, web
from veena.plugins.normalize.rules import Context, Rule

log = logging.getLogger("veena.normalize")

RULES: tuple[Rule, ...] = (
    web.EMAIL, web.URL, phones.PHONE, dates.NUMERIC_DATE, dates.TIME, dates.NAMED_DATE,
    currency.CURRENCY, units.UNIT, numerals.DIMENSIONS, numerals.FRACTION, dates.RANGE,
    numerals.ORDINAL, numerals.DECADE, numerals.PLAIN, abbreviations.ABBREVIATION,
    symbols.SYMBOL, numerals.DIGITS,
)
_BY_NAME = {r.name: r for r in RULES}
PATTERN = re.compile(unicodedata.normalize(
    "NFC", "|".join(f"(?P<{r.name}>{r.pattern})" for r in RULES)))

_SEGMENT_END = re.compile(r"[.?!]+(?=\s|$)|[।॥\n]")
_SPACE_BEFORE_PUNCT = re.compile(r" +(?=[,.?!;:।॥)\]}”’…])")
_SPACES = re.compile(r"[^\S\n]+")
_SPACE_AROUND_NEWLINE = re.compile(r" *\n *")


def _needs_space(ch: str) -> bool:
    return ch.isalnum() and not script.is_indic(ch) or ch == tags.PLACEHOLDER


class Engine:
    """The rule pass plus clean-up and tag protection around it."""

    def __init__(self, default_language: str = "en", unknown_tags: str = "drop",
                 emoji: str = "drop") -> None:
        self.default_language = default_language
        self.keep_unknown = unknown_tags == "keep"
        self.drop_emoji = emoji == "drop"
        self.contexts = {lang: Context(lang, unknown_tags) for lang in script.LANGUAGES}

    def normalize(self, text: str, hint: str | None = None) -> str:
        hint = hint or script.digit_language(text)
        text = script.clean(text, self.drop_emoji)
        if not text:
            return text
        text, found = tags.protect(text, self.keep_unknown)
        text = self.rewrite(text, hint)
        text = _SPACES.sub(" ", text)
        text = _SPACE_BEFORE_PUNCT.sub("", text)
        text = _SPACE_AROUND_NEWLINE.sub("\n", text).strip()
        return unicodedata.normalize("NFC", tags.restore(text, found))

    def languages(self, text: str, hint: str | None) -> tuple[list[int], list[str]]:
        """Start offsets of the sentences of ``text`` and the language of each."""
        starts, found = [0], []
        totals = [0, 0, 0]
        pos = 0
        for m in _SEGMENT_END.finditer(text):
            found.append(self._count(text[pos:m.end()], totals))
            pos = m.end()
            starts.append(pos)
        found.append(self._count(text[pos:], totals))
        fallback = hint or script.dominant(totals) or self.default_language
        return starts, [lang or fallback for lang in found]

    @staticmethod
    def _count(segment: str, totals: list[int]) -> str | None:
        counts = script.word_counts(segment)
        for i, c in enumerate(counts):
            totals[i] += c
        return script.dominant(counts)

    def rewrite(self, text: str, hint: str | None) -> str:
        if not any(c.isdigit() for c in text) and not _MAY_MATCH.search(text):
            return text
        starts, langs = self.languages(text, hint)
        contexts = self.contexts
        out: list[str] = []
        last = 0
        for m in PATTERN.finditer(text):
            s, e = m.span()
            lang = langs[bisect.bisect_right(starts, s) - 1]
            try:
                spoken = _BY_NAME[m.lastgroup].speak(m, contexts[lang])
            except Exception:  # a rule must never take the request down: keep the text
                log.debug("rule %s failed on %r", m.lastgroup, m.group(), exc_info=True)
                spoken = m.group()
            if spoken and s > 0 and _needs_space(text[s - 1]) and spoken[0] != " ":
                spoken = " " + spoken
            if spoken and e < len(text) and _needs_space(text[e]) and spoken[-1] != " ":
                spoken += " "
            out.append(text[last:s])
            out.append(spoken)
            last = e
        out.append(text[last:])
        return "".join(out)


_MAY_MATCH = re.compile(r"[@&+=%°©#~*_`^™®|½¼¾⅓⅔]|\.[a-z]|www|://| [-–—] |\b(?:Dr|Mr|Mrs|Ms|Prof|"
                        r"St|Mt|Capt|Col|Gen|Lt|Sgt|Hon|Smt|Sh|Shri|Fig|Vol|Ch|Govt|Dept|Rd|Ave|"
                        r"Apt|vs|approx|Approx|e\.g|i\.e|E\.g|I\.e|etc|Ltd|Pvt|Inc|Co|Corp|Bros|"
                        r"Jr|Sr)\b|डॉ|प्रो|श्री|कि\.मी|డా|ప్రొ|శ్రీ")

