"""URLs and e-mail addresses, spelled the way people read them out:
``https://www.veena.ai/docs`` -> "w w w dot veena dot ai slash docs",
``help@veena.ai`` -> "help at veena dot ai"."""

from __future__ import annotations

import re

from veena.plugins.normalize import numbers
from veena.plugins.normalize.rules import Context, Rule

WORDS = {
    "en": {".": "dot", "@": "at", "/": "slash", "-": "dash", "_": "underscore", ":": "colon",
           "?": "question mark", "=": "equals", "&": "and", "#": "hash", "+": "plus",
           "%": "percent",
           "~": "tilde"},
    "hi": {".": "डॉट", "@": "एट", "/": "स्लैश", "-": "डैश", "_": "अंडरस्कोर", ":": "कोलन",
           "?": "क्वेश्चन मार्क", "=": "इक्वल्स", "&": "एंड", "#": "हैश", "+": "प्लस",
           "%": "परसेंट", "~": "टिल्ड"},
    "te": {".": "డాట్", "@": "ఎట్", "/": "స్లాష్", "-": "డాష్", "_": "అండర్స్కోర్", ":": "కోలన్",
           "?": "క్వశ్చన్ మార్క్", "=": "ఈక్వల్స్", "&": "అండ్", "#": "హాష్", "+": "ప్లస్",
           "%": "పర్సెంట్", "~": "టిల్డ్"},
}
# Words are written without ZWNJ (అండర్స్కోర్): the clean-up stage removes format characters,
# so a word with one would change when normalized again.
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


_LOCAL = re.compile(r"[A-Za-z0-9._+-]*$")
_LABELS = re.compile(r"(?<![\w@/.-])[A-Za-z0-9][A-Za-z0-9.-]*$")
_LABEL = re.compile(r"(?<![A-Za-z0-9-])[A-Za-z0-9][A-Za-z0-9-]*$")
_SCHEME = re.compile(r"(?<![A-Za-z])(?i:https?|ftp)$")


def _mail(m: re.Match[str], ctx: Context, last: int) -> tuple[str, int]:
    """Anchored at ``@``; the local part before it joins the match."""
    local = _LOCAL.search(m.string, max(last, m.start() - 64), m.start())
    start = local.start() if local else m.start()
    while start < m.start() and not m.string[start].isalnum():
        start += 1
    return spell(m.string[start:m.end()], ctx.lang), start


def _url(m: re.Match[str], ctx: Context, last: int) -> tuple[str, int] | None:
    """Anchored at ``://`` (the scheme before it is dropped) or at ``.tld`` (the domain labels
    before it join the match)."""
    if m.group("url_scheme"):
        scheme = _SCHEME.search(m.string, max(last, m.start() - 6), m.start())
        if scheme is None:  # "://x" with no scheme is no address: other rules read its words,
            # and only digits (which no later rule would speak) are spelled here
            return spell(m.group(), ctx.lang) if any(c.isdigit() for c in m.group()) else None
        return spell(m.group()[3:].rstrip("/"), ctx.lang), scheme.start()
    labels = _LABELS.search(m.string, max(last, m.start() - 100), m.start())
    if labels is None or labels.group()[-1] in ".-" or ".." in labels.group():  # "0..ai"
        label = _LABEL.search(m.string, max(last, m.start() - 63), m.start())
        if label is not None and any(c.isdigit() for c in label.group()):
            return spell(m.string[label.start():m.end()], ctx.lang), label.start()  # "/0.ai"
        return spell(m.group(), ctx.lang) if any(c.isdigit() for c in m.group()) else None
    return spell(m.string[labels.start():m.end()].rstrip("/"), ctx.lang), labels.start()


_PATH = r"[^\s<>\"'()\[\]\ue000]*[^\s<>\"'()\[\].,;:!?\ue000]"
MARKS = "@:.$₹€£¥=+&%~^#|<>_*/\\\\\\-–—"
"""What an address or a run of symbols starts with: the first three rules share a lookahead."""
EMAIL = Rule("mail", r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+(?<![.-])", _mail, back=True,
             first=MARKS)
URL = Rule(
    "url",
    rf"(?P<url_scheme>://){_PATH}"
    rf"|\.(?:{TLDS})(?:\.[a-z]{{2}})?(?![\w@-])(?:/{_PATH}|/)?",
    _url, back=True, first=MARKS)
