"""Units after a number: 5 km, 2.5kg, 30°C, 50%, 4 GB, 60 km/h, 10-20 km (a range)."""

from __future__ import annotations

import re
import unicodedata

from veena.plugins.normalize import numbers
from veena.plugins.normalize.numerals import AMOUNT, FRACTION_GUARD, FRACTION_PATTERN, SIGNED, \
    VULGAR, Amount, en_fraction_of, fraction_words, number_words, speak_fraction
from veena.plugins.normalize.rules import Context, Rule, group, word_before

# symbol -> (English singular, English plural, Hindi, Telugu singular, Telugu plural)
UNITS: dict[str, tuple[str, str, str, str, str]] = {
    "km": ("kilometer", "kilometers", "किलोमीटर", "కిలోమీటర్", "కిలోమీటర్లు"),
    "किमी": ("kilometer", "kilometers", "किलोमीटर", "కిలోమీటర్", "కిలోమీటర్లు"),
    "m": ("meter", "meters", "मीटर", "మీటర్", "మీటర్లు"),
    "cm": ("centimeter", "centimeters", "सेंटीमीटर", "సెంటీమీటర్", "సెంటీమీటర్లు"),
    "mm": ("millimeter", "millimeters", "मिलीमीटर", "మిల్లీమీటర్", "మిల్లీమీటర్లు"),
    "kg": ("kilogram", "kilograms", "किलोग्राम", "కిలోగ్రాము", "కిలోగ్రాములు"),
    "kgs": ("kilogram", "kilograms", "किलोग्राम", "కిలోగ్రాము", "కిలోగ్రాములు"),
    "किग्रा": ("kilogram", "kilograms", "किलोग्राम", "కిలోగ్రాము", "కిలోగ్రాములు"),
    "g": ("gram", "grams", "ग्राम", "గ్రాము", "గ్రాములు"),
    "gm": ("gram", "grams", "ग्राम", "గ్రాము", "గ్రాములు"),
    "mg": ("milligram", "milligrams", "मिलीग्राम", "మిల్లీగ్రాము", "మిల్లీగ్రాములు"),
    "l": ("liter", "liters", "लीटर", "లీటరు", "లీటర్లు"),
    "L": ("liter", "liters", "लीटर", "లీటరు", "లీటర్లు"),
    "ml": ("milliliter", "milliliters", "मिलीलीटर", "మిల్లీలీటరు", "మిల్లీలీటర్లు"),
    "mL": ("milliliter", "milliliters", "मिलीलीटर", "మిల్లీలీటరు", "మిల్లీలీటర్లు"),
    "km/h": ("kilometer per hour", "kilometers per hour", "किलोमीटर प्रति घंटा",
             "కిలోమీటర్ గంటకు", "కిలోమీటర్లు గంటకు"),
    "kmph": ("kilometer per hour", "kilometers per hour", "किलोमीटर प्रति घंटा",
             "కిలోమీటర్ గంటకు", "కిలోమీటర్లు గంటకు"),
    "mph": ("mile per hour", "miles per hour", "मील प्रति घंटा", "మైలు గంటకు", "మైళ్ళు గంటకు"),
    "°C": ("degree Celsius", "degrees Celsius", "डिग्री सेल्सियस", "డిగ్రీ సెల్సియస్",
           "డిగ్రీల సెల్సియస్"),
    "℃": ("degree Celsius", "degrees Celsius", "डिग्री सेल्सियस", "డిగ్రీ సెల్సియస్",
          "డిగ్రీల సెల్సియస్"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit", "डिग्री फ़ारेनहाइट", "డిగ్రీ ఫారెన్హీట్",
           "డిగ్రీల ఫారెన్హీట్"),
    "°": ("degree", "degrees", "डिग्री", "డిగ్రీ", "డిగ్రీలు"),
    "%": ("percent", "percent", "प्रतिशत", "శాతం", "శాతం"),
    "KB": ("kilobyte", "kilobytes", "किलोबाइट", "కిలోబైట్", "కిలోబైట్లు"),
    "MB": ("megabyte", "megabytes", "मेगाबाइट", "మెగాబైట్", "మెగాబైట్లు"),
    "GB": ("gigabyte", "gigabytes", "गीगाबाइट", "గిగాబైట్", "గిగాబైట్లు"),
    "TB": ("terabyte", "terabytes", "टेराबाइट", "టెరాబైట్", "టెరాబైట్లు"),
    "Hz": ("hertz", "hertz", "हर्ट्ज़", "హెర్ట్జ్", "హెర్ట్జ్"),
    "kHz": ("kilohertz", "kilohertz", "किलोहर्ट्ज़", "కిలోహెర్ట్జ్", "కిలోహెర్ట్జ్"),
    "MHz": ("megahertz", "megahertz", "मेगाहर्ट्ज़", "మెగాహెర్ట్జ్", "మెగాహెర్ట్జ్"),
    "GHz": ("gigahertz", "gigahertz", "गीगाहर्ट्ज़", "గిగాహెర్ట్జ్", "గిగాహెర్ట్జ్"),
    "W": ("watt", "watts", "वाट", "వాట్", "వాట్లు"),
    "kW": ("kilowatt", "kilowatts", "किलोवाट", "కిలోవాట్", "కిలోవాట్లు"),
    "kWh": ("kilowatt hour", "kilowatt hours", "किलोवाट घंटा", "కిలోవాట్ గంట", "కిలోవాట్ గంటలు"),
    "V": ("volt", "volts", "वोल्ट", "వోల్ట్", "వోల్టులు"),
    "mAh": ("milliamp hour", "milliamp hours", "मिलीएम्पियर घंटा", "మిల్లీ ఆంపియర్ గంట",
            "మిల్లీ ఆంపియర్ గంటలు"),
    "hr": ("hour", "hours", "घंटे", "గంట", "గంటలు"),
    "hrs": ("hour", "hours", "घंटे", "గంట", "గంటలు"),
    "h": ("hour", "hours", "घंटे", "గంట", "గంటలు"),
    "min": ("minute", "minutes", "मिनट", "నిమిషం", "నిమిషాలు"),
    "mins": ("minute", "minutes", "मिनट", "నిమిషం", "నిమిషాలు"),
    "sec": ("second", "seconds", "सेकंड", "సెకను", "సెకన్లు"),
    "secs": ("second", "seconds", "सेकंड", "సెకను", "సెకన్లు"),
    "ms": ("millisecond", "milliseconds", "मिलीसेकंड", "మిల్లీసెకను", "మిల్లీసెకన్లు"),
    "ft": ("foot", "feet", "फ़ुट", "అడుగు", "అడుగులు"),
    "sq ft": ("square foot", "square feet", "वर्ग फ़ुट", "చదరపు అడుగు", "చదరపు అడుగులు"),
    "sqft": ("square foot", "square feet", "वर्ग फ़ुट", "చదరపు అడుగు", "చదరపు అడుగులు"),
    "lb": ("pound", "pounds", "पाउंड", "పౌండ్", "పౌండ్లు"),
    "lbs": ("pound", "pounds", "पाउंड", "పౌండ్", "పౌండ్లు"),
    "mi": ("mile", "miles", "मील", "మైలు", "మైళ్ళు"),
}
UNITS = {unicodedata.normalize("NFC", k): tuple(unicodedata.normalize("NFC", w) for w in v)
         for k, v in UNITS.items()}
_UNIT = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))
_TE_CASE = "లో|కు|కి|తో|ని|పై|ల"
"""Telugu case endings typed onto a unit symbol (5 kmలో): they join the unit's name."""
_RANGE_TO = {"en": "to", "hi": "से", "te": "నుండి"}


def unit_words(unit: str, amount: Amount, lang: str, attributive: bool = False) -> str:
    """The unit's name after ``amount``; ``attributive`` (English "a 64 GB phone") keeps it
    singular."""
    en1, en2, hi, te1, te2 = UNITS[unit]
    one = amount.value == 1 and not amount.frac or attributive and lang == "en"
    if lang == "hi":
        return "घंटा" if unit in ("hr", "hrs", "h") and one else hi
    if lang == "te":
        return te1 if one else te2
    return en1 if one else en2


def _speak(m: re.Match[str], ctx: Context) -> str:
    unit = group(m, "unit", "u")
    unit = unit if unit in UNITS else "sq ft"  # the only spelling variant: sq. ft, sq  ft
    amount = Amount(group(m, "unit", "amt"))
    if amount.frac == "5" and ctx.lang != "en" and amount.grouping is None:
        words = numbers.with_half(amount.value, ctx.lang)  # ढाई किलो, రెండున్నర కిలోలు
    else:
        words = numbers.before_noun(number_words(amount.raw, ctx.lang), ctx.lang)
    if group(m, "unit", "sign"):
        words = f"{numbers.MINUS[ctx.lang]} {words}"
    low = group(m, "unit", "from")
    if low:
        words = f"{number_words(low, ctx.lang)} {_RANGE_TO[ctx.lang]} {words}"
    attributive = word_before(m) in ("a", "an")
    name = unit_words(unit, amount, ctx.lang, attributive)
    if case := group(m, "unit", "case"):  # కిలోమీటర్లు + లో -> కిలోమీటర్లలో (oblique -ల)
        if name.endswith("లు"):
            name = name[:-1]
        name += "" if case == "ల" and name.endswith("ల") else case
    return f"{words} {name}"


UNIT = Rule(
    "unit",
    rf"{SIGNED.format('unit')}(?:(?P<unit_from>{AMOUNT})\s?[-–]\s?)?"
    rf"(?P<unit_amt>{AMOUNT}) ?(?P<unit_u>{_UNIT}|sq\.? ?ft)(?P<unit_case>{_TE_CASE})?"
    r"(?![\w\u0900-\u0DFF])",
    _speak, guard='[-−]?[\\d,.]+(?:\\s?[-–]\\s?[\\d,.]+)? ?[A-Za-z%°℃क]')


def _dimensions(m: re.Match[str], ctx: Context) -> str:
    by = {"en": "by", "hi": "बाई", "te": "బై"}[ctx.lang]
    out = (f"{number_words(group(m, 'dim', 'a'), ctx.lang)} {by} "
           f"{number_words(group(m, 'dim', 'b'), ctx.lang)}")
    unit = group(m, "dim", "u")
    if unit:
        unit = unit if unit in UNITS else "sq ft"
        out += " " + unit_words(unit, Amount(group(m, "dim", "b")), ctx.lang)
    return out


DIMENSIONS = Rule(
    "dim",
    rf"(?<![\w.,\-])(?P<dim_a>\d+(?:\.\d+)?) ?[x×] ?(?P<dim_b>\d+(?:\.\d+)?)"
    rf"(?: ?(?P<dim_u>{_UNIT}|sq\.? ?ft)(?![\w\u0900-\u0DFF]))?(?![\w])",
    _dimensions, guard=r"[\d.]+ ?[x×] ?\d")


def _fraction(m: re.Match[str], ctx: Context) -> str:
    """½ kg -> half a kilogram / आधा किलोग्राम / అర కిలోగ్రాము; 1½ kg -> one and a half
    kilograms / डेढ़ किलोग्राम / ఒకటిన్నర కిలోగ్రాములు; with no unit, ``speak_fraction``."""
    unit = group(m, "frac", "u")
    if unit is None:
        return speak_fraction(m, ctx)
    raw = group(m, "frac", "v") or f"{group(m, 'frac', 'a')}/{group(m, 'frac', 'b')}"
    a, b = map(int, VULGAR.get(raw, raw).split("/"))
    unit = unit if unit in UNITS else "sq ft"
    whole = group(m, "frac", "whole")
    en1, en2, hi, te1, te2 = UNITS[unit]
    if whole is None:
        if ctx.lang == "en":
            return en_fraction_of(a, b, en1) or f"{fraction_words(None, a, b, 'en')} {en2}"
        return f"{fraction_words(None, a, b, ctx.lang)} {hi if ctx.lang == 'hi' else te1}"
    words = fraction_words(int(whole), a, b, ctx.lang)
    return f"{words} {en2 if ctx.lang == 'en' else hi if ctx.lang == 'hi' else te2}"


FRACTION = Rule(
    "frac",
    rf"{FRACTION_PATTERN}(?: ?(?P<frac_u>{_UNIT}|sq\.? ?ft)(?![\w\u0900-\u0DFF]))?",
    _fraction, guard=FRACTION_GUARD)
"""Fractions, and the unit after one (one rule: a second would cost every digit a try)."""
