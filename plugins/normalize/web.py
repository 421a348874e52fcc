"""URLs and e-mail addresses, spelled the way people read them out:
``https://www.veena.ai/docs`` -> "w w w dot veena dot ai slash docs",
``help@veena.ai`` -> "help at veena dot ai"."""

from __future__ import annotations

import re

from veena.plugins.normalize import numbers
from veena.plugins.normalize.rules import Context, Rule

WORDS = {
    "en": {".": "dot", "@": "at", "/": "slash", "-": "dash", "_": "underscore", ":": "colon",
           "?": "question mark", "=": "equals", "&": "and", "#": "hash", "+": "plus", "%": "percent",
           "~": "tilde"},
    "hi": {".": "डॉट", "@": "एट", "/": "स्लैश", "-": "डैश", "_": "अंडरस्कोर", ":": "कोलन",
           "?": "क्वेश्चन मार्क", "=": "इक्वल्स", "&": "एंड", "#": "हैश", "+": "प्लस",
           "%": "परसेंट", "~": "टिल्ड"},
    "te": {".": "డాట్", "@": "ఎట్", "/": "స్లాష్", "-": "డాష్", "_": "అండర్‌స్కోర్", ":": "కోలన్",
           "?": "క్వశ్చన్ మార్క్", "=": "ఈక్వల్స్", "&": "అండ్", "#": "హాష్", "+": "ప్లస్",
           "%": "పర్సెంట్", "~": "టిల్డ్"},
}
TLDS = ("com|org|net|in|io|co|gov|edu|ai|info|app|dev|me|us|uk|biz|tech|xyz|online|site|ly")
_PART = re.compile(r"[A-Za-z]+|\d+|[^A-Za-z\d]")


def spell(address: str, lang: str) -> str:
    words = WORDS[lang]
    out = []
    for piece in _PART.findall(address):
        if piece.isdigit():
            out.append(numbers.digits(piece, lang) if len(piece) > 2 or piece[0] == "0"
                       else numbers.cardinal(int(piece), lang))
        elif piece.isalpha():
            out.append(" ".join(piece.lower()) if piece.lower() == "www" else piece)
        elif piece in words:
            out.append(words[piece])
    return " ".join(out)


def _speak(m: re.Match[str], ctx: Context) -> str:
    text = m.group()
    text = re.sub(r"^(?:https?|ftp)://", "", text, flags=re.I).rstrip("/")
    return spell(text, ctx.lang)


EMAIL = Rule("mail", r"(?<![\w.+-])[A-Za-z0-9][\w.+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+(?<![.-])",
             _speak)
URL = Rule(
    "url",
    r"(?:(?i:https?|ftp)://|(?<![\w.@])(?i:www)\.)[^\s<>\"'()\[\]]*[^\s<>\"'()\[\].,;:!?]"
    rf"|(?<![\w.@/-])[A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*\.(?:{TLDS})(?![\w@-])"
    r"(?:/[^\s<>\"'()\[\]]*[^\s<>\"'()\[\].,;:!?])?",
    _speak)
