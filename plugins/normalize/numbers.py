"""Numbers as words in English, Hindi and Telugu: cardinals, ordinals, decimals, digits.

Written here rather than taken from a library: see docs/text-processing.md for what
``num2words`` and ``indic-num2words`` give for Hindi and Telugu and why neither fits.
"""

from __future__ import annotations

import unicodedata

# --- English ---------------------------------------------------------------------------------

_EN_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
             "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_EN_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_EN_ORD_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                     "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


def _en_below_1000(n: int) -> str:
    words = []
    if n >= 100:
        words += [_EN_UNITS[n // 100], "hundred"]
        n %= 100
        if not n:
            return " ".join(words)
    if n < 20:
        words.append(_EN_UNITS[n])
    else:
        words.append(_EN_TENS[n // 10] + (f"-{_EN_UNITS[n % 10]}" if n % 10 else ""))
    return " ".join(words)


def _en_western(n: int) -> str:
    if n < 1000:
        return _en_below_1000(n)
    for value, name in _EN_SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            out = f"{_en_western(head)} {name}"
            return f"{out} {_en_western(rest)}" if rest else out
    raise AssertionError(n)


def _en_indian(n: int) -> str:
    if n < 1000:
        return _en_below_1000(n)
    for value, name in ((10**7, "crore"), (10**5, "lakh"), (1000, "thousand")):
        if n >= value:
            head, rest = divmod(n, value)
            out = f"{_en_indian(head)} {name}"
            return f"{out} {_en_indian(rest)}" if rest else out
    raise AssertionError(n)


def _en_ordinal(n: int, indian: bool) -> str:
    words = (_en_indian if indian else _en_western)(n)
    head, sep, last = words.rpartition(" ")
    pre, dash, unit = last.rpartition("-")
    if unit in _EN_ORD_IRREGULAR:
        unit = _EN_ORD_IRREGULAR[unit]
    elif unit.endswith("y"):
        unit = unit[:-1] + "ieth"
    else:
        unit += "th"
    return f"{head}{sep}{pre}{dash}{unit}"


# --- Hindi -----------------------------------------------------------------------------------

_HI_0_99 = unicodedata.normalize("NFC", """
शून्य एक दो तीन चार पाँच छह सात आठ नौ दस ग्यारह बारह तेरह चौदह पंद्रह सोलह सत्रह अठारह उन्नीस
बीस इक्कीस बाईस तेईस चौबीस पच्चीस छब्बीस सत्ताईस अट्ठाईस उनतीस तीस इकतीस बत्तीस तैंतीस चौंतीस
पैंतीस छत्तीस सैंतीस अड़तीस उनतालीस चालीस इकतालीस बयालीस तैंतालीस चवालीस पैंतालीस छियालीस
सैंतालीस अड़तालीस उनचास पचास इक्यावन बावन तिरपन चौवन पचपन छप्पन सत्तावन अट्ठावन उनसठ साठ इकसठ
बासठ तिरसठ चौंसठ पैंसठ छियासठ सड़सठ अड़सठ उनहत्तर सत्तर इकहत्तर बहत्तर तिहत्तर चौहत्तर पचहत्तर
छिहत्तर सतहत्तर अठहत्तर उन्यासी अस्सी इक्यासी बयासी तिरासी चौरासी पचासी छियासी सत्तासी अट्ठासी
नवासी नब्बे इक्यानवे बानवे तिरानवे चौरानवे पचानवे छियानवे सत्तानवे अट्ठानवे निन्यानवे
""").split()
assert len(_HI_0_99) == 100
_HI_SCALES = ((10**7, "करोड़"), (10**5, "लाख"), (1000, "हज़ार"), (100, "सौ"))
_HI_SCALES = tuple((v, unicodedata.normalize("NFC", w)) for v, w in _HI_SCALES)
_HI_ORD_STEM = {1: "पहल", 2: "दूसर", 3: "तीसर", 4: "चौथ", 6: "छठ"}


def _hi(n: int) -> str:
    if n < 100:
        return _HI_0_99[n]
    for value, name in _HI_SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            out = f"{_hi(head)} {name}"
            return f"{out} {_hi(rest)}" if rest else out
    raise AssertionError(n)


def hi_ordinal(n: int, form: str = "m") -> str:
    """Hindi ordinal; ``form`` is ``m`` (-वाँ), ``f`` (-वीं) or ``o`` (oblique, -वें)."""
    if n in _HI_ORD_STEM:
        return _HI_ORD_STEM[n] + {"m": "ा", "f": "ी", "o": "े"}[form]
    return _hi(n) + {"m": "वाँ", "f": "वीं", "o": "वें"}[form]


# --- Telugu ----------------------------------------------------------------------------------

_TE_0_19 = ("సున్నా ఒకటి రెండు మూడు నాలుగు ఐదు ఆరు ఏడు ఎనిమిది తొమ్మిది పది పదకొండు పన్నెండు "
            "పదమూడు పద్నాలుగు పదిహేను పదహారు పదిహేడు పద్దెనిమిది పంతొమ్మిది").split()
_TE_TENS = "_ _ ఇరవై ముప్పై నలభై యాభై అరవై డెబ్బై ఎనభై తొంభై".split()
# (value, standalone singular, standalone plural, joined singular, joined plural)
_TE_SCALES = ((10**7, "ఒక కోటి", "కోట్లు", "ఒక కోటి", "కోట్ల"),
              (10**5, "ఒక లక్ష", "లక్షలు", "ఒక లక్ష", "లక్షల"),
              (1000, "వెయ్యి", "వేలు", "వెయ్యి", "వేల"),
              (100, "వంద", "వందలు", "నూట", "వందల"))


def _te_below_100(n: int) -> str:
    if n < 20:
        return _TE_0_19[n]
    tens, unit = divmod(n, 10)
    return _TE_TENS[tens] + (f" {_TE_0_19[unit]}" if unit else "")


def _te_coefficient(n: int) -> str:
    """A number before వేలు/లక్షలు/కోట్లు: "one" takes its adjectival form (ఇరవై ఒక వేలు)."""
    words = _te(n)
    return words[: -len("ఒకటి")] + "ఒక" if words.endswith("ఒకటి") else words


def _te(n: int) -> str:
    if n < 100:
        return _te_below_100(n)
    for value, one, many, one_joined, many_joined in _TE_SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            if head == 1:
                out = one_joined if rest else one
            else:
                out = f"{_te_coefficient(head)} {many_joined if rest else many}"
            return f"{out} {_te(rest)}" if rest else out
    raise AssertionError(n)


def te_ordinal(n: int) -> str:
    if n == 1:
        return "మొదటి"
    words = _te(n)
    if words.endswith("ై"):
        return words[:-1] + "య్యవ"
    if words[-1] in "ుిూ":
        return words[:-1] + "వ"
    return words + "వ"


# --- shared ----------------------------------------------------------------------------------

HUGE = 10**15
"""From 16 integer digits on, a number is read digit by digit (names run out or mislead)."""
POINT = {"en": "point", "hi": "दशमलव", "te": "పాయింట్"}
MINUS = {"en": "minus", "hi": "माइनस", "te": "మైనస్"}
HALF_HI = {1: "डेढ़", 2: "ढाई"}


def cardinal(n: int, lang: str, indian: bool = True) -> str:
    """``n`` in words; English uses lakh/crore when ``indian`` else million/billion."""
    if n < 0:
        return f"{MINUS[lang]} {cardinal(-n, lang, indian)}"
    if n >= HUGE:  # no one says "ten lakh crore crore": the digits, one by one
        return digits(str(n), lang)
    if lang == "hi":
        return _hi(n)
    if lang == "te":
        return _te(n)
    return _en_indian(n) if indian else _en_western(n)


def ordinal(n: int, lang: str, form: str = "m") -> str:
    if lang == "hi":
        return hi_ordinal(n, form)
    if lang == "te":
        return te_ordinal(n)
    return _en_ordinal(n, indian=True)


def digit(d: int, lang: str) -> str:
    return cardinal(d, lang)


def digits(s: str, lang: str) -> str:
    """Each ASCII digit of ``s`` as a word."""
    return " ".join(digit(int(c), lang) for c in s if c.isdigit())


def decimal(int_part: str, frac: str, lang: str, indian: bool = True) -> str:
    """``12.05`` -> twelve point zero five (digits after the point one by one)."""
    head = cardinal(int(int_part or "0"), lang, indian)
    return f"{head} {POINT[lang]} {digits(frac, lang)}" if frac else head


def with_half(n: int, lang: str) -> str:
    """``n.5`` as a native speaker says it before a scale word (ढाई लाख, రెండున్నర లక్షలు)."""
    if n == 0:
        return {"hi": "आधा", "te": "అర", "en": "zero point five"}[lang]
    if lang == "hi":
        return HALF_HI.get(n) or f"साढ़े {_hi(n)}"
    if lang == "te":
        return _te(n) + "న్నర"
    return f"{cardinal(n, 'en')} point five"


def year(n: int, lang: str) -> str:
    """A year as it is read: nineteen forty-seven, उन्नीस सौ सैंतालीस, two thousand five."""
    if not 1000 <= n <= 9999 or (2000 <= n <= 2009) or n % 1000 == 0 \
            or n >= 2000 and lang != "en":  # दो हज़ार चौबीस, రెండు వేల ఇరవై నాలుగు
        return cardinal(n, lang)
    hi_part, lo = divmod(n, 100)
    if lang == "hi":
        return f"{_hi(hi_part)} सौ" + (f" {_hi(lo)}" if lo else "")
    if lang == "te":
        return f"{_te(hi_part)} {'వందల' if lo else 'వందలు'}" + (f" {_te(lo)}" if lo else "")
    if lo == 0:
        return f"{_en_below_1000(hi_part)} hundred"
    if lo < 10:
        return f"{_en_below_1000(hi_part)} oh {_EN_UNITS[lo]}"
    return f"{_en_below_1000(hi_part)} {_en_below_1000(lo)}"


_TE_ATTRIBUTIVE = (("ఒకటి", "ఒక"), ("వందలు", "వందల"), ("వేలు", "వేల"), ("లక్షలు", "లక్షల"),
                   ("కోట్లు", "కోట్ల"))


def te_attributive(words: str) -> str:
    """Telugu number words placed before a noun: ఐదు వేలు -> ఐదు వేల (రూపాయలు), ఒకటి -> ఒక."""
    for end, joined in _TE_ATTRIBUTIVE:
        if words.endswith(end):
            return words[: -len(end)] + joined
    return words


def te_scale_attributive(words: str) -> str:
    """Only the scale words change before a noun: రెండు వందలు -> రెండు వందల (మంది)."""
    return words if words.endswith("ఒకటి") else te_attributive(words)


def before_noun(words: str, lang: str) -> str:
    """A number as it is said before a noun (only Telugu changes its form)."""
    return te_attributive(words) if lang == "te" else words
