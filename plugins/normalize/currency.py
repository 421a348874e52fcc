"""Money: ₹ Rs. INR रु. రూ. $ USD € £, with lakh/crore/k/million scales, paise and cents, ranges.

Rupee amounts written without grouping are read in the Indian system (₹250000 -> two lakh fifty
thousand rupees); dollar, euro and pound amounts in the Western one unless grouped the Indian way.
"""

from __future__ import annotations

import re
import unicodedata

from veena.plugins.normalize import numbers
from veena.plugins.normalize.numerals import AMOUNT, START, Amount
from veena.plugins.normalize.rules import Context, Rule, group

# code -> {lang: (singular, plural, subunit singular, subunit plural)}
NAMES = {
    "INR": {"en": ("rupee", "rupees", "paisa", "paise"), "hi": ("रुपया", "रुपये", "पैसा", "पैसे"),
            "te": ("రూపాయి", "రూపాయలు", "పైసా", "పైసలు")},
    "USD": {"en": ("dollar", "dollars", "cent", "cents"), "hi": ("डॉलर", "डॉलर", "सेंट", "सेंट"),
            "te": ("డాలర్", "డాలర్లు", "సెంటు", "సెంట్లు")},
    "EUR": {"en": ("euro", "euros", "cent", "cents"), "hi": ("यूरो", "यूरो", "सेंट", "सेंट"),
            "te": ("యూరో", "యూరోలు", "సెంటు", "సెంట్లు")},
    "GBP": {"en": ("pound", "pounds", "penny", "pence"), "hi": ("पाउंड", "पाउंड", "पेंस", "पेंस"),
            "te": ("పౌండ్", "పౌండ్లు", "పెన్నీ", "పెన్స్")},
}
SYMBOLS = {"₹": "INR", "rs": "INR", "rs.": "INR", "inr": "INR", "रु": "INR", "रु.": "INR",
           "रू": "INR", "रू.": "INR", "రూ": "INR", "రూ.": "INR", "$": "USD", "usd": "USD",
           "us$": "USD", "€": "EUR", "eur": "EUR", "£": "GBP", "gbp": "GBP"}
_PREFIX = r"₹|Rs\.?|RS\.?|INR|रु\.?|रू\.?|రూ\.?|US\$|\$|USD|€|EUR|£|GBP"
_SUFFIX = r"₹|Rs\.?|INR|/-"

# scale word -> (value, {lang: (after one, after more)})
_SCALES = {
    "thousand": (10**3, {"en": ("thousand",) * 2, "hi": ("हज़ार",) * 2, "te": ("వెయ్యి", "వేల")}),
    "lakh": (10**5, {"en": ("lakh",) * 2, "hi": ("लाख",) * 2, "te": ("లక్ష", "లక్షల")}),
    "crore": (10**7, {"en": ("crore",) * 2, "hi": ("करोड़",) * 2, "te": ("కోటి", "కోట్ల")}),
    "million": (10**6, {"en": ("million",) * 2, "hi": ("मिलियन",) * 2, "te": ("మిలియన్",) * 2}),
    "billion": (10**9, {"en": ("billion",) * 2, "hi": ("बिलियन",) * 2, "te": ("బిలియన్",) * 2}),
}
SCALE_WORDS = {"k": "thousand", "thousand": "thousand", "hazar": "thousand", "हज़ार": "thousand",
               "వేలు": "thousand", "వేల": "thousand", "lakh": "lakh", "lakhs": "lakh",
               "lac": "lakh", "lacs": "lakh", "l": "lakh", "लाख": "lakh", "లక్ష": "lakh",
               "లక్షలు": "lakh", "లక్షల": "lakh", "crore": "crore", "crores": "crore",
               "cr": "crore", "करोड़": "crore", "కోటి": "crore", "కోట్లు": "crore",
               "కోట్ల": "crore", "million": "million", "millions": "million", "mn": "million",
               "m": "million", "billion": "billion", "billions": "billion", "bn": "billion",
               "b": "billion"}
SCALE_WORDS = {unicodedata.normalize("NFC", k): v for k, v in SCALE_WORDS.items()}
_SCALE = (r"(?i:lakhs?|lacs?|crores?|cr|thousand|million|billion|mn|bn)|[kKLMB]|लाख|करोड़|हज़ार"
          r"|లక్షలు|లక్షల|లక్ష|కోట్లు|కోట్ల|కోటి|వేలు|వేల")


def scale_name(word: str) -> str:
    return SCALE_WORDS.get(word.lower(), SCALE_WORDS.get(word, "thousand"))


def scaled_amount(amount: Amount, scale: str, lang: str) -> str:
    """``2.5`` + lakh -> two point five lakh / ढाई लाख / రెండున్నర లక్షల."""
    one, many = _SCALES[scale][1][lang]
    if amount.frac == "5" and lang in ("hi", "te"):
        head = numbers.with_half(amount.value, lang)
    elif amount.frac:
        head = amount.words(lang, True)
    else:
        head = numbers.before_noun(numbers.cardinal(amount.value, lang), lang)
    if lang == "te" and amount.value == 1 and not amount.frac and scale == "thousand":
        return one
    return f"{head} {one if amount.value == 1 and not amount.frac else many}"


def money(amount: Amount, code: str, lang: str, scale: str | None = None) -> str:
    """Words for an amount of a currency (singular for exactly one, paise/cents for decimals)."""
    one, many, sub_one, sub_many = NAMES[code][lang]
    if scale:
        return f"{scaled_amount(amount, scale, lang)} {many}"
    indian = amount.indian(code == "INR")
    if amount.frac and len(amount.frac) > 2:
        return f"{amount.words(lang, indian)} {many}"
    parts = []
    if amount.value or not amount.frac:
        words = numbers.before_noun(numbers.cardinal(amount.value, lang, indian), lang)
        parts.append(f"{words} {one if amount.value == 1 else many}")
    cents = int(amount.frac.ljust(2, "0")) if amount.frac else 0
    if cents:
        words = numbers.before_noun(numbers.cardinal(cents, lang), lang)
        parts.append(f"{words} {sub_one if cents == 1 else sub_many}")
    return " ".join(parts)


_TO = {"en": "to", "hi": "से", "te": "నుండి"}


def _speak(m: re.Match[str], ctx: Context) -> str:
    symbol = group(m, "cur", "pre") or group(m, "cur", "post") or "₹"
    code = SYMBOLS.get(symbol.lower(), SYMBOLS.get(symbol, "INR")) if symbol != "/-" else "INR"
    scale = group(m, "cur", "scale")
    scale = scale_name(scale) if scale else None
    amount = Amount(group(m, "cur", "amt") or group(m, "cur", "amt2"))
    upto = group(m, "cur", "to")
    if upto:
        low = (scaled_amount(amount, scale, ctx.lang).rsplit(" ", 1)[0] if scale
               else numbers.cardinal(amount.value, ctx.lang, amount.indian(code == "INR"))
               if not amount.frac else amount.words(ctx.lang, code == "INR"))
        return f"{low} {_TO[ctx.lang]} {money(Amount(upto), code, ctx.lang, scale)}"
    return money(amount, code, ctx.lang, scale)


_TAIL = rf"(?:\s?(?P<cur_scale>{_SCALE})(?![\w\u0900-\u0DFF]))?(?:\s?/-)?"
CURRENCY = Rule(
    "cur",
    rf"(?:(?<![A-Za-z\u0900-\u0DFF])(?P<cur_pre>{_PREFIX})\s?(?P<cur_amt>{AMOUNT})"
    rf"(?:\s?[-–]\s?(?:{_PREFIX})?\s?(?P<cur_to>{AMOUNT}))?{_TAIL}"
    rf"|{START}(?P<cur_amt2>{AMOUNT})\s?(?P<cur_post>{_SUFFIX})(?![\w]))",
    _speak, guard='[₹$€£]|R[Ss]|INR|US|EUR|GBP|\u0930[\u0941\u0942]|\u0C30\u0C42'
                  '|[\\d,.]+ ?(?:₹|Rs|INR|/-)')
