"""Digits in running text: plain numbers, Indian and Western grouping, decimals, negatives,
ordinals (1st, 21वीं, 5వ), fractions, decades, long digit strings, and years by context."""

from __future__ import annotations

import re
import unicodedata

from veena.plugins.normalize import numbers
from veena.plugins.normalize.rules import Context, Rule, group, text_after, word_before
from veena.plugins.normalize.web import TLDS

AMOUNT = r"(?:\d{1,3}(?:,\d{2})+,\d{3}|\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])"
"""A number as written: 2,50,000 (Indian) / 250,000 (Western) / 250000, optional decimals."""
START = r"(?<![\w.,\-])"
"""A number starts after neither a word character nor a separator that would make it part of
something longer (a version, a code)."""


class Amount:
    """A parsed AMOUNT: integer value, decimal digits and which grouping it was written in."""

    __slots__ = ("value", "frac", "grouping", "raw")

    def __init__(self, raw: str) -> None:
        self.raw = raw
        whole, _, self.frac = raw.partition(".")
        parts = whole.split(",")
        self.value = int("".join(parts))
        if len(parts) == 1:
            self.grouping = None
        elif len(parts) > 2 and len(parts[-2]) == 2 or len(parts) == 2 and len(parts[0]) > 3:
            self.grouping = "indian"
        elif len(parts) == 2 and self.value < 100_000:
            self.grouping = None  # 50,000 reads the same either way
        else:
            self.grouping = "western"

    def indian(self, default: bool) -> bool:
        return default if self.grouping is None else self.grouping == "indian"

    def words(self, lang: str, indian_default: bool = False) -> str:
        return numbers.decimal(str(self.value), self.frac, lang, self.indian(indian_default))


def number_words(raw: str, lang: str, indian_default: bool = False) -> str:
    """Any AMOUNT as words; a leading zero or 10+ ungrouped digits are read digit by digit."""
    if "," not in raw and "." not in raw and (len(raw) > 1 and raw[0] == "0" or len(raw) >= 10):
        return numbers.digits(raw, lang)
    return Amount(raw).words(lang, indian_default)


# --- years -----------------------------------------------------------------------------------

_YEAR_CUES_BEFORE = {"in", "since", "of", "by", "from", "until", "till", "year", "during",
                     "before", "after", "circa", "around", "early", "late", "mid", "the", "and",
                     "©",
                     "सन्", "सन", "साल", "वर्ष", "ईस्वी", "संवत", "సంవత్సరం", "సం."}
_YEAR_CUES_AFTER = re.compile(r"^(?:\s?(?:AD|BC|CE|BCE|A\.D\.|B\.C\.)\b|\s?(?:में|तक|ई\.|ईस्वी)"
                              r"(?![\u0900-\u097F])|(?:లో|నుండి|నుంచి|వరకు)|\s(?:సంవత్సరం|లో))")


def looks_like_year(m: re.Match[str], value: int) -> bool:
    return 1100 <= value <= 2099 and (word_before(m) in _YEAR_CUES_BEFORE
                                     or bool(_YEAR_CUES_AFTER.match(text_after(m))))


# --- the rules -------------------------------------------------------------------------------

def _plain(m: re.Match[str], ctx: Context) -> str:
    raw = group(m, "num", "amt")
    sign = group(m, "num", "sign")
    if sign is None and "," not in raw and "." not in raw and len(raw) == 4 \
            and looks_like_year(m, int(raw)):
        words = numbers.year(int(raw), ctx.lang)
    elif ctx.lang != "en" and raw.endswith(".5") and "," not in raw \
            and (_SCALE_NEXT.match(m.string, m.end()) or _HALF_NEXT.match(m.string, m.end())):
        words = numbers.with_half(int(raw[:-2] or 0), ctx.lang)  # 1.5 लाख -> डेढ़ लाख
    else:
        words = number_words(raw, ctx.lang)
        if ctx.lang == "te" and (nxt := _TE_NEXT_WORD.match(m.string, m.end())) \
                and nxt.group(1) not in TE_NOT_NOUNS:
            words = numbers.te_scale_attributive(words)
    return f"{numbers.MINUS[ctx.lang]} {words}" if sign else words


_TE_NEXT_WORD = re.compile(r" ([\u0C00-\u0C7F]+)")
_SCALE_NEXT = re.compile(unicodedata.normalize(
    "NFC", r" ?(?:हज़ार|लाख|करोड़|వేల|వేలు|లక్ష|లక్షల|లక్షలు|కోటి|కోట్ల|కోట్లు)(?![\u0900-\u0DFF])"))
_HALF_NEXT = re.compile(unicodedata.normalize("NFC", r" ?(?:" + "|".join("""
घंटे घंटा किलो लीटर मीटर किलोमीटर साल वर्ष महीने महीना दिन हफ़्ते हफ्ते कप गिलास चम्मच फ़ुट फुट
इंच गज़ गज बीघा एकड़ रोटी दर्जन प्रतिशत गुना
గంట కిలో లీటర మీటర కిలోమీటర సంవత్సర నెల రోజు కప్పు గ్లాసు అడుగు ఎకరా డజను రెట్లు శాతం
""".split()) + ")"))
"""Word units and counted nouns after which ``n.5`` is said as a half: ढाई घंटे, डेढ़ लीटर,
రెండున్నర గంటలు (a Telugu word with its case ending too: రెండున్నర గంటల్లో)."""
TE_NOT_NOUNS = frozenset(
    "ఉంది ఉన్నాయి ఉన్నారు ఉన్నది ఉండేది అయింది అయ్యింది అవుతుంది అయ్యాయి మాత్రమే కంటే "
    "వరకు నుండి నుంచి లో కి కు తో అని కూడా".split())
"""Words after a number that are not what it counts (verbs, postpositions): the number keeps
its standalone form (మొత్తం రెండు వందలు ఉన్నాయి)."""


SIGNED = r"(?:(?<![\w)\]])(?P<{0}_sign>[-−])|(?<![\w.,\-]))"
"""A number's start, with an optional minus sign: ``SIGNED.format(rule_name)``."""
NOT_ADDRESS = rf"(?![\w.+-]*@[A-Za-z0-9-]+\.[A-Za-z0-9])(?![\w-]*\.(?:{TLDS})(?![\w@-]))"
"""Digits that belong to an e-mail address or a domain (user123@x.in, 99acres.com) are left to
the address rules, which read them with the rest."""
PLAIN = Rule("num", rf"{SIGNED.format('num')}(?P<num_amt>{AMOUNT}){NOT_ADDRESS}", _plain)

_HI_ORD_FORM = {"ा": "m", "ाँ": "m", "ां": "m", "ी": "f", "ीं": "f", "े": "o", "ें": "o"}


_HI_FEMININE = frozenset(unicodedata.normalize("NFC", w) for w in """
बार सदी शताब्दी तारीख़ तारीख मंज़िल मंजिल कक्षा पंक्ति किताब पुस्तक लाइन रैंक पोज़ीशन पोजीशन
वर्षगांठ वर्षगाँठ सालगिरह जयंती पुण्यतिथि बेटी पत्नी बात क़िस्त किस्त पारी गेंद कोशिश पीढ़ी योजना
लहर रात सुबह शाम बैठक परीक्षा मीटिंग रिपोर्ट ट्रेन बस सीट क्लास लिस्ट सूची किश्त मंज़िला
class meeting rank position line list train seat innings wave
""".split())
"""Nouns an ordinal before them agrees with as feminine (तीसरी बार, 21वीं सदी, 2nd class)."""
_HI_POSTPOSITIONS = frozenset(unicodedata.normalize("NFC", w) for w in
                              "में को से पर का की के तक ने लिए वाले वाली वाला".split())
_HI_ADVERBIAL = frozenset(unicodedata.normalize("NFC", w) for w in
                          "दिन साल वर्ष महीने हफ़्ते हफ्ते".split())
"""Time nouns an ordinal is mostly said before in the oblique (दूसरे दिन, तीसरे साल)."""
_NEXT_TWO = re.compile(r" ([^\s,.;:!?।]+)(?: ([^\s,.;:!?।]+))?")


def hi_ordinal_form(m: re.Match[str]) -> str:
    """The form of a Hindi ordinal written 2nd/3rd: feminine before a feminine noun (तीसरी
    बार), oblique when a postposition follows its noun (दूसरे semester में), else masculine."""
    nxt = _NEXT_TWO.match(m.string, m.end())
    if nxt is None:
        return "m"
    noun, after = nxt.group(1), nxt.group(2)
    if noun in _HI_FEMININE or noun.lower() in _HI_FEMININE:
        return "f"
    return "o" if noun in _HI_POSTPOSITIONS or after in _HI_POSTPOSITIONS \
        or noun in _HI_ADVERBIAL else "m"


def _ordinal(m: re.Match[str], ctx: Context) -> str:
    n = int(group(m, "ord", "n"))
    if group(m, "ord", "en"):
        return numbers.ordinal(n, ctx.lang, hi_ordinal_form(m) if ctx.lang == "hi" else "m")
    if hi := group(m, "ord", "hi"):
        return numbers.hi_ordinal(n, _HI_ORD_FORM.get(hi.lstrip("वलरथठ"), "m"))
    return numbers.te_ordinal(n)


ORDINAL = Rule("ord", rf"{START}(?P<ord_n>\d{{1,9}})(?:(?P<ord_en>st|nd|rd|th)(?![A-Za-z])"
                      r"|(?P<ord_hi>वाँ|वां|वीं|वी|वें|वे|ला|ली|ले|रा|री|रे|था|थी|थे|ठा|ठी|ठे)"
                      r"(?![\u0900-\u097F])|(?P<ord_te>వ)(?![\u0C00-\u0C7F]))", _ordinal,
               guard="\\d+[snrtवलरथठవ]", first="0-9")

_FRACTIONS = {
    "en": {(1, 2): "one half", (1, 4): "one quarter", (3, 4): "three quarters",
           (1, 3): "one third", (2, 3): "two thirds"},
    "hi": {(1, 2): "आधा", (1, 4): "एक चौथाई", (3, 4): "तीन चौथाई", (1, 3): "एक तिहाई",
           (2, 3): "दो तिहाई"},
    "te": {(1, 2): "అర", (1, 4): "పావు", (3, 4): "ముప్పావు"},
}
_OVER = {"en": "over", "hi": "बटा", "te": "బై"}
VULGAR = {"½": "1/2", "¼": "1/4", "¾": "3/4", "⅓": "1/3", "⅔": "2/3"}


_EN_AND = {(1, 2): "a half", (1, 4): "a quarter", (3, 4): "three quarters", (1, 3): "a third",
           (2, 3): "two thirds"}
_EN_OF_A = {(1, 2): "half", (1, 4): "a quarter of", (3, 4): "three quarters of",
            (1, 3): "a third of", (2, 3): "two thirds of"}


def fraction_words(whole: int | None, a: int, b: int, lang: str) -> str:
    """``whole a/b`` as said before a unit or noun: two and a half, ढाई, सवा दो, पौने तीन,
    రెండున్నర; a fraction alone: one half, आधा, అర."""
    if whole is not None:
        if lang == "en" and (a, b) in _EN_AND:
            return f"{numbers.cardinal(whole, 'en')} and {_EN_AND[a, b]}"
        if (a, b) == (1, 2) and lang != "en":
            return numbers.with_half(whole, lang)  # डेढ़, ढाई, साढ़े तीन; ఒకటిన్నర
        if lang == "hi" and (a, b) == (1, 4):  # 1¼ is सवा alone (सवा किलो); the clock differs
            return "सवा" if whole == 1 else f"सवा {numbers.cardinal(whole, 'hi')}"
        if lang == "hi" and (a, b) == (3, 4):
            return f"पौने {numbers.cardinal(whole + 1, 'hi')}"
    words = _FRACTIONS[lang].get((a, b)) or \
        f"{numbers.cardinal(a, lang)} {_OVER[lang]} {numbers.cardinal(b, lang)}"
    if whole is not None:
        and_ = {"en": "and", "hi": "और", "te": "మరియు"}[lang]
        return f"{numbers.cardinal(whole, lang)} {and_} {words}"
    return words


def en_fraction_of(a: int, b: int, noun: str) -> str | None:
    """A fraction alone before a singular English noun: half a cup, three quarters of an hour."""
    head = _EN_OF_A.get((a, b))
    if head is None:
        return None
    article = "an" if noun[:1].lower() in "aeiou" or noun.lower().startswith("hour") else "a"
    return f"{head} {article} {noun}"


_EN_NOUN_NEXT = re.compile(r" ([a-z]+)")
_NOT_NOUNS = frozenset("of and or to the a an is was are were in on at by for with from as it "
                       "that this than per".split())


def _plural(word: str) -> bool:
    return word.endswith("s") and not word.endswith(("ss", "us", "is"))


def speak_fraction(m: re.Match[str], ctx: Context) -> str:
    if v := group(m, "frac", "v"):
        a, b = map(int, VULGAR[v].split("/"))
    else:
        a, b = int(group(m, "frac", "a")), int(group(m, "frac", "b"))
    whole = group(m, "frac", "whole")
    if whole is None and ctx.lang == "en" and (nxt := _EN_NOUN_NEXT.match(m.string, m.end())) \
            and nxt.group(1) not in _NOT_NOUNS and not _plural(nxt.group(1)) \
            and (said := en_fraction_of(a, b, nxt.group(1))):
        return said[: -len(nxt.group(1)) - 1]  # "½ cup" -> "half a" + " cup"
    return fraction_words(int(whole) if whole else None, a, b, ctx.lang)


FRACTION_PATTERN = (rf"(?:{START}(?P<frac_whole>\d+) ?)?(?:(?P<frac_v>[½¼¾⅓⅔])|{START}"
                    r"(?P<frac_a>\d{1,2})/(?P<frac_b>\d{1,2})(?![\d/]))")
"""A fraction (½, 3/4, 2 1/2); units.FRACTION adds the unit that may follow it."""
FRACTION_GUARD = r"[½¼¾⅓⅔]|\d+ ?[½¼¾⅓⅔]|\d{1,2}/\d|\d+ \d{1,2}/\d"


def _decade(m: re.Match[str], ctx: Context) -> str:
    raw = group(m, "dec", "n")
    words = numbers.year(int(raw), "en") if len(raw) == 4 else numbers.cardinal(int(raw), "en")
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


DECADE = Rule("dec", rf"{START}(?P<dec_n>1[0-9]{{2}}0|20[0-9]0|[1-9]0)'?s(?![A-Za-z])", _decade,
              guard=r"\d+'?s", first="0-9")


def _digits_left(m: re.Match[str], ctx: Context) -> str:
    head, *rest = group(m, "dig", "n").split(".")
    words = [number_words(head, ctx.lang)] + [
        f"{numbers.POINT[ctx.lang]} {number_words(part, ctx.lang)}" for part in rest]
    return " ".join(words)


DIGITS = Rule("dig", rf"(?P<dig_n>\d+(?:\.\d+)*){NOT_ADDRESS}", _digits_left)
"""Digits no other rule took (MP3, COVID-19, A4): read as a number."""
