"""Symbols left after the other rules: & @ + = % # ~ ° © and markdown marks (* _ ` | < >); runs
of symbols (``=====``, ``#$%&``, ``$$$``) are decoration, never read out."""

from __future__ import annotations

import re

from veena.plugins.normalize.rules import Context, Rule
from veena.plugins.normalize.web import MARKS

WORDS = {
    "&": {"en": "and", "hi": "और", "te": "మరియు"},
    "@": {"en": "at", "hi": "एट", "te": "ఎట్"},
    "+": {"en": "plus", "hi": "प्लस", "te": "ప్లస్"},
    "=": {"en": "equals", "hi": "बराबर", "te": "సమానం"},
    "%": {"en": "percent", "hi": "प्रतिशत", "te": "శాతం"},
    "°": {"en": "degrees", "hi": "डिग्री", "te": "డిగ్రీలు"},
    "©": {"en": "copyright", "hi": "कॉपीराइट", "te": "కాపీరైట్"},
    "#": {"en": "number", "hi": "नंबर", "te": "నంబర్"},
    "~": {"en": "about", "hi": "लगभग", "te": "సుమారు"},
}
_BEFORE_NUMBER = {"#", "~"}
_SILENT = {"*": "", "_": " ", "`": "", "^": " ", "™": "", "®": "", "#": "", "~": " ",
           "<": " ", ">": " "}
"""``<`` and ``>`` left after the tags were taken out are stray markup: dropped."""


def _speak(m: re.Match[str], ctx: Context) -> str:
    if m.group("sym_h"):  # COVID-19: the hyphen is not heard
        return " "
    sym = m.group("sym_s")
    if sym is None:  # a spaced dash between words: a pause
        return ","
    if sym == "|":
        return "।" if ctx.lang != "en" else ","
    if sym in _BEFORE_NUMBER and m.group("sym_n") is None:
        return _SILENT[sym]
    if sym in WORDS:
        return f" {WORDS[sym][ctx.lang]} "
    return _SILENT[sym]


SYMBOL = Rule("sym", r"(?P<sym_s>[&@+=%°©#~*_`^™®|<>])(?P<sym_n>(?=\d))?"
                     r"|(?:[-–—]|--)(?<=\S [-–—])(?= \S)|--(?<=\S --)(?= \S)"
                     r"|(?P<sym_h>-)(?<=[A-Za-z]-)(?=\d)", _speak)


def _run(m: re.Match[str], ctx: Context) -> str:
    return " "


RUN = Rule("run", r"[$₹€£¥](?=[$₹€£¥])|[$₹€£¥](?<=[$₹€£¥][$₹€£¥])(?!\s?\d)"
                  r"|[=+@&%~^#|<>_*/\\\-–—$₹€£¥]{3,}(?!\s?\d)|(?P<run_c>[=~^#|_*<>])(?P=run_c)+",
           _run, guard=r"[$₹€£¥=+@&%~^#|<>_*/\\\-–—]", first=MARKS)
"""A currency sign doubled (``$$$5``: only the last one is read, with its amount), a run of three
or more symbols (dividers, cartoon swearing ``#$%&``, ``-->``), a doubled mark (``==``, ``##``)."""
