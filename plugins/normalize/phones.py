"""Phone numbers, read digit by digit in the groups they are written in (a pause between groups):
+91 98765 43210, 9876543210 (read 5 + 5), 040-2345 6789, 1800-123-4567."""

from __future__ import annotations

import re

from veena.plugins.normalize import numbers
from veena.plugins.normalize.rules import Context, Rule

PLUS = {"en": "plus", "hi": "प्लस", "te": "ప్లస్"}


def _speak(m: re.Match[str], ctx: Context) -> str:
    raw = m.group()
    groups = re.findall(r"\d+", raw)
    if raw.startswith("+") and len(groups) == 1 and len(groups[0]) > 10:
        groups = [groups[0][:-10], groups[0][-10:]]
    groups = [part for g in groups for part in ((g[:5], g[5:]) if len(g) == 10 else (g,))]
    words = ", ".join(numbers.digits(g, ctx.lang) for g in groups)
    return f"{PLUS[ctx.lang]} {words}" if raw.startswith("+") else words


PHONE = Rule(
    "tel",
    r"(?:\+\d{1,3}[ -]?\(?\d{2,5}\)?(?:[ -]?\d{2,5}){1,3}"
    r"|(?<![\w.,+\-])(?:[6-9]\d{9}|[6-9]\d{4}[ -]\d{5}|0\d{2,4}[ -]\d{3,4}[ -]?\d{4}"
    r"|1800[ -]?\d{3}[ -]?\d{4}|0[6-9]\d{9}))(?![\d])",
    _speak, guard='\\+|\\d[\\d -]{9}')
