"""Dates (15/08/1947, 2024-03-01, 15 August 1947, Aug 15), times (10:30, 5 pm, 10.30 a.m.),
year ranges and number ranges (10-20, 1990–1995)."""

from __future__ import annotations

import re
import unicodedata

from veena.plugins.normalize import numbers
from veena.plugins.normalize.numerals import START, looks_like_year, number_words
from veena.plugins.normalize.rules import Context, Rule, group, word_before

MONTHS = {
    "en": "January February March April May June July August September October November December",
    "hi": "जनवरी फ़रवरी मार्च अप्रैल मई जून जुलाई अगस्त सितंबर अक्टूबर नवंबर दिसंबर",
    "te": "జనవరి ఫిబ్రవరి మార్చి ఏప్రిల్ మే జూన్ జూలై ఆగస్టు సెప్టెంబర్ అక్టోబర్ నవంబర్ డిసెంబర్",
}
MONTHS = {k: unicodedata.normalize("NFC", v).split() for k, v in MONTHS.items()}
_SPELLINGS: dict[str, int] = {}
for _names in MONTHS.values():
    _SPELLINGS.update({n: i for i, n in enumerate(_names)})
_SPELLINGS.update({n: i for i, n in enumerate(
    "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())})
_SPELLINGS.update({"Sept": 8, "फरवरी": 1, "सितम्बर": 8, "अक्तूबर": 9, "नवम्बर": 10, "दिसम्बर": 11,
                   "జులై": 6, "ఆగష్టు": 7})
_SPELLINGS = {unicodedata.normalize("NFC", k): v for k, v in _SPELLINGS.items()}
_MONTH = "|".join(sorted(map(re.escape, _SPELLINGS), key=len, reverse=True))
_EN_MONTH = "|".join(sorted((re.escape(k) for k in _SPELLINGS if k.isascii()), key=len,
                            reverse=True))
"""Month-first dates (Aug 15, March 2024) only in English: a rule that may start at any
Devanagari or Telugu letter would make the engine stop at every one of them."""
_NOT_LETTER = r"(?![A-Za-z\u0900-\u0DFF])"


def _year(raw: str, lang: str) -> str:
    if len(raw) == 2:
        return numbers.digits(raw, lang) if raw[0] == "0" and lang != "en" else (
            f"oh {numbers.cardinal(int(raw[1]), 'en')}" if raw[0] == "0"
            else numbers.cardinal(int(raw), lang))
    return numbers.year(int(raw), lang)


def spoken_date(day: int | None, month: int, year: str | None, lang: str,
                month_first: bool = False) -> str:
    name = MONTHS[lang][month]
    parts: list[str] = []
    if day is not None:
        d = numbers.ordinal(day, "en") if lang == "en" else numbers.cardinal(day, lang)
        parts = [name, d] if month_first else [d, name]
    else:
        parts = [name]
    if year:
        parts.append(_year(year, lang))
    return " ".join(parts)


def _numeric(m: re.Match[str], ctx: Context) -> str:
    if iso := group(m, "date", "iy"):
        y, mo, d = iso, int(group(m, "date", "im")), int(group(m, "date", "id"))
    else:
        a, b, y = int(group(m, "date", "a")), int(group(m, "date", "b")), group(m, "date", "y")
        d, mo = (a, b) if b <= 12 else (b, a)  # day first, as in India; 12/25 is US order
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return " ".join(number_words(p, ctx.lang) for p in re.split(r"\D", m.group()) if p)
    return spoken_date(d, mo - 1, y, ctx.lang)


NUMERIC_DATE = Rule(
    "date",
    rf"{START}(?:(?P<date_iy>\d{{4}})-(?P<date_im>[01]\d)-(?P<date_id>[0-3]\d)"
    r"|(?P<date_a>\d{1,2})(?P<date_sep>[/.\-])(?P<date_b>\d{1,2})(?P=date_sep)"
    r"(?P<date_y>\d{4}|\d{2}))(?![\d])",
    _numeric, guard='\\d{1,4}[/.\\-]\\d', first="0-9")


_SENTENCE_GOES_ON = re.compile(r"\s+[a-z0-9]")


def _named(m: re.Match[str], ctx: Context) -> str:
    if month := group(m, "mdate", "m1"):
        out = spoken_date(int(group(m, "mdate", "d1")), _SPELLINGS[month], group(m, "mdate", "y1"),
                          ctx.lang)
        if group(m, "mdate", "of") and ctx.lang == "en":
            out = out.replace(" ", " of ", 1)  # the fifth of May
    else:
        month = group(m, "mdate", "m2")
        day = group(m, "mdate", "d2")
        year = group(m, "mdate", "y2") or group(m, "mdate", "y3")
        out = spoken_date(int(day) if day else None, _SPELLINGS[month], year, ctx.lang,
                          month_first=True)
    if m.group().endswith(".") and not _SENTENCE_GOES_ON.match(m.string, m.end()):
        out += "."  # "on 5 May." -- the period ended the sentence, not an abbreviation
    return out


NAMED_DATE = Rule(
    "mdate",
    rf"{START}(?P<mdate_d1>[0-3]?\d)(?:st|nd|rd|th)? (?P<mdate_of>of )?(?P<mdate_m1>{_MONTH})"
    rf"\.?{_NOT_LETTER}"
    rf"(?:,? (?P<mdate_y1>\d{{4}})(?![\d]))?"
    rf"|(?<![A-Za-z\u0900-\u0DFF])(?P<mdate_m2>{_EN_MONTH})\.? (?:(?P<mdate_d2>[0-3]?\d)"
    r"(?:st|nd|rd|th)?(?![\d:])(?:,? (?P<mdate_y2>\d{4})(?![\d]))?|(?P<mdate_y3>\d{4})(?![\d]))",
    _named, guard='[ADFJMNOS][a-z]|\\d{1,2}(?:st|nd|rd|th)? (?:of )?[A-Z\\u0900-\\u0C7F]')

# --- times -----------------------------------------------------------------------------------

_AMPM = r"[AaPp]\.?\s?[Mm]\.?(?![A-Za-z])"
_DAYPART = {"hi": ("रात", "सुबह", "दोपहर", "शाम", "रात"),
            "te": ("రాత్రి", "ఉదయం", "మధ్యాహ్నం", "సాయంత్రం", "రాత్రి")}


def _daypart(h24: int, lang: str) -> str:
    i = 0 if h24 < 4 else 1 if h24 < 12 else 2 if h24 < 16 else 3 if h24 < 20 else 4
    return _DAYPART[lang][i]


def _hi_time(h: int, mi: int, s: int | None) -> str:
    hw = numbers.cardinal(h, "hi")
    if s is None:
        if mi == 0:
            return f"{hw} बजे"
        if mi == 30:
            return f"{numbers.HALF_HI.get(h) or 'साढ़े ' + hw} बजे"
        if mi == 15:
            return f"सवा {hw} बजे"
        if mi == 45 and h <= 12:
            return f"पौने {numbers.cardinal(h % 12 + 1, 'hi')} बजे"
    out = f"{hw} बजकर {numbers.cardinal(mi, 'hi')} मिनट"
    return out + (f" {numbers.cardinal(s, 'hi')} सेकंड" if s else "")


def _te_time(h: int, mi: int, s: int | None) -> str:
    hw = "ఒంటి గంట" if h == 1 else f"{numbers.cardinal(h, 'te')} గంటలు"
    if mi == 0 and not s:
        return hw
    if mi == 30 and not s:
        return numbers.with_half(h, "te")
    hw = "ఒంటి గంట" if h == 1 else f"{numbers.cardinal(h, 'te')} గంటల"
    out = f"{hw} {numbers.cardinal(mi, 'te')} నిమిషాలు"
    return out + (f" {numbers.cardinal(s, 'te')} సెకన్లు" if s else "")


def _en_time(h: int, mi: int, s: int | None, ampm: str | None) -> str:
    hw = numbers.cardinal(h, "en")
    if mi == 0 and not s:
        out = hw if ampm else f"{hw} o'clock"
    elif mi < 10:
        out = f"{hw} oh {numbers.cardinal(mi, 'en')}"
    else:
        out = f"{hw} {numbers.cardinal(mi, 'en')}"
    if s:
        out += f" and {numbers.cardinal(s, 'en')} second{'s' if s != 1 else ''}"
    return f"{out} {ampm}" if ampm else out


def _te_hour_said(out: str, said: str) -> str:
    """"8:00 గంటలకు", "10:20 గంటలకు": the text has its hour word (with a case ending), so it is
    not said twice; the ending moves to the last word (పది గంటల ఇరవై నిమిషాలకు)."""
    for hour in (" గంటలు", " గంట"):
        if out.endswith(hour):
            return f"{out[: -len(hour)]} {said}"
    if not out.endswith("లు"):
        return f"{out} {said}"  # ఎనిమిదిన్నర గంటలకు
    rest = said[len("గంట"):].removeprefix("ల")
    return out if rest in ("", "ు") else out[:-1] + rest


def _time(m: re.Match[str], ctx: Context) -> str:
    h = int(group(m, "time", "h") or group(m, "time", "h2") or group(m, "time", "h3"))
    mi = int(group(m, "time", "m") or group(m, "time", "m2") or 0)
    s = group(m, "time", "s")
    s = int(s) if s else None
    raw_ampm = group(m, "time", "ap") or group(m, "time", "ap2") or group(m, "time", "ap3")
    ampm = None
    if raw_ampm:
        ampm = "a m" if raw_ampm[0] in "Aa" else "p m"
    if ctx.lang == "en":
        out = _en_time(h, mi, s, ampm)
    else:
        h24 = h % 12 + (12 if ampm == "p m" else 0) if ampm else h
        out = _hi_time(h, mi, s) if ctx.lang == "hi" else _te_time(h, mi, s)
        if ampm and word_before(m) not in _DAYPART[ctx.lang]:  # "शाम 7:30 pm": said already
            out = f"{_daypart(h24, ctx.lang)} {out}"
    if (said := group(m, "time", "te")) and ctx.lang == "te":
        out = _te_hour_said(out, said)
    if raw_ampm and raw_ampm.endswith(".") and re.match(r"\s*$|\s+[A-Z\u0900-\u0DFF]",
                                                        m.string[m.end():m.end() + 2]):
        out += "."  # "at 5 p.m. Then" -- the abbreviation's period also ended the sentence
    return out


TIME = Rule(
    "time",
    rf"{START}(?:(?P<time_h>[01]?\d|2[0-3]):(?P<time_m>[0-5]\d)(?::(?P<time_s>[0-5]\d))?"
    rf"(?: ?(?P<time_ap>{_AMPM}))?(?![\d:])(?: ?बजे(?![\u0900-\u097F])"
    r"| ?(?P<time_te>గంట(?:లకు|కు|కి|లు|లో|ల)?)(?![\u0C00-\u0C7F]))?"
    rf"|(?P<time_h2>[01]?\d)\.(?P<time_m2>[0-5]\d) ?(?P<time_ap2>{_AMPM})"
    rf"|(?P<time_h3>1[0-2]|0?[1-9]) ?(?P<time_ap3>{_AMPM}))",
    _time, guard='\\d{1,2}(?:[:.]\\d\\d| ?[AaPp])', first="0-9")

_TO = {"en": "to", "hi": "से", "te": "నుండి"}

# --- ranges ----------------------------------------------------------------------------------

_CLOCK = rf"(?:[01]?\d|2[0-3]):[0-5]\d(?: ?{_AMPM})?|(?:1[0-2]|0?[1-9]) ?{_AMPM}"
_TIME_AT = re.compile(TIME.pattern[len(START):])
_TE_UPTO = re.compile(r" ?వరకు")
_TE_COUNTED = re.compile(" (?:" + "|".join(
    "గంట నిమిష సెకను సెకన్ల కిలో లీటర మీటర సంవత్సర నెల రోజు వార కప్పు గ్లాసు అడుగు ఎకరా మంది "
    "పేజీ రూపాయ శాతం డిగ్రీ".split()) + ")")
"""Counted nouns (stems) after a Telugu range: పది నుండి ఇరవై నిమిషాలు, no వరకు."""


def _member(m: re.Match[str], name: str, ctx: Context, ampm: str = "") -> str:
    """One end of a time range spoken by the time rule (a bare hour takes the other end's
    am/pm: "8-10 pm")."""
    start, end = m.span(name)
    if ampm:
        t = _TIME_AT.fullmatch(f"{m.group(name)} {ampm.rstrip('.')}")
    else:
        t = _TIME_AT.match(m.string, start, end)
        if t is None or t.end() != end:
            t = _TIME_AT.fullmatch(m.group(name))
    return _time(t, ctx)


def _time_range(m: re.Match[str], ctx: Context) -> str:
    b = _member(m, "trng_b", ctx)
    bare = group(m, "trng", "h")
    a = _member(m, "trng_h", ctx, group(m, "trng", "bap") or "") if bare \
        else _member(m, "trng_a", ctx)
    if ctx.lang != "en":  # "शाम 6-8 pm": the day part is said once, before the range
        part = a.split(" ", 1)[0]
        if part in _DAYPART[ctx.lang] and b.startswith(part + " "):
            b = b[len(part) + 1:]
        if part == word_before(m) and part in _DAYPART[ctx.lang]:
            a = a[len(part) + 1:]
    if ctx.lang == "te":
        a, b = (w[:-1] if w.endswith("లు") else w for w in (a, b))  # గంటలు -> గంటల నుండి
        upto = "" if _TE_UPTO.match(m.string, m.end()) else " వరకు"
        return f"{a} నుండి {b}{upto}"
    return f"{a} {_TO[ctx.lang]} {b}"


TIME_RANGE = Rule(
    "trng",
    rf"{START}(?:(?P<trng_a>{_CLOCK})|(?P<trng_h>1[0-2]|0?[1-9])(?=\s?[-–—]\s?(?:1[0-2]|0?[1-9])"
    rf"(?::[0-5]\d)? ?{_AMPM}))\s?[-–—]\s?"
    rf"(?P<trng_b>(?:[01]?\d|2[0-3]):[0-5]\d(?: ?(?P<trng_ap>{_AMPM}))?"
    rf"|(?:1[0-2]|0?[1-9]) ?(?P<trng_bap>{_AMPM}))(?![\d:])(?: ?बजे(?![\u0900-\u097F]))?",
    _time_range, guard=r"\d{1,2}+(?::\d\d)?+ ?+(?:[AaPp]\.?\s?[Mm]\.?)?+\s?+[-–—]",
    first="0-9")

def _range(m: re.Match[str], ctx: Context) -> str:
    a, b = group(m, "rng", "a"), group(m, "rng", "b")
    if a.isdigit() and b.isdigit() and len(a) == 4 and len(b) in (2, 4) \
            and 1100 <= int(a) <= 2099 and (len(b) == 2 or 1100 <= int(b) <= 2099):
        first = numbers.year(int(a), ctx.lang)
        second = numbers.year(int(b), ctx.lang) if len(b) == 4 else _year(b, ctx.lang)
    else:
        first, second = number_words(a, ctx.lang), number_words(b, ctx.lang)
    if ctx.lang == "te":  # no వరకు before what is counted: పది నుండి ఇరవై నిమిషాలు
        upto = "" if _TE_UPTO.match(m.string, m.end()) or _TE_COUNTED.match(m.string, m.end()) \
            else " వరకు"
        return f"{first} నుండి {second}{upto}"
    return f"{first} {_TO[ctx.lang]} {second}"


RANGE = Rule("rng", rf"{START}(?P<rng_a>\d+(?:\.\d+)?) ?[-–—] ?(?P<rng_b>\d+(?:\.\d+)?)(?![\d])",
             _range, guard=r"[\d.]+ ?[-–—] ?\d", first="0-9")

__all__ = ["NUMERIC_DATE", "NAMED_DATE", "TIME", "TIME_RANGE", "RANGE", "looks_like_year"]
