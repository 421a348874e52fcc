"""Emotion tags: typed spellings -> canonical tags (``veena.platform.emotions``), protected from
every other rule by a placeholder while the rest of the text is rewritten.

``<laugh>``, ``< Laughs >``, ``[laughing]``, ``(sighs)``, ``*giggle*`` -> ``<laugh>``, ``<sigh>``
... An unknown ``<thing>`` is dropped or kept (as ``<thing>``) by config; unknown ``[...]``,
``(...)`` are ordinary text; an unknown ``*word*`` is markdown emphasis and loses its stars.
"""

from __future__ import annotations

import re

from veena.platform import emotions

PLACEHOLDER = "\ue000"
"""Stands for a tag while rules run (private use: the clean-up stage removes any in the input)."""

_NAME = r"[A-Za-z][A-Za-z _-]{0,30}?"
_MARKUP = re.compile(r"<\s*/\s*[A-Za-z][\w:.-]{0,30}\s*>"  # </whisper>, </baz>
                     r"|<\s*[A-Za-z][\w:.-]{0,30}(?:\s+[^<>]{0,200}?)?/\s*>"  # <bar/>, <br />
                     r"|<\s*[A-Za-z][\w:.-]{0,30}\s+[^<>]{0,200}?=[^<>]{0,200}>"  # <p class="x">
                     r"|<!--.{0,2000}?-->|<![^<>]{0,200}>|<\?[^<>]{0,200}\?>")
"""Markup that is never speech: closing and self-closing tags, tags with attributes, comments,
doctypes. A closing tag of a known emotion ends nothing a voice can hold (the tags are events,
not spans), so it goes too; an opening tag with attributes keeps its name if it is known."""
_TYPED = re.compile(rf"<\s*(?P<angle>{_NAME})\s*>|\[\s*(?P<square>{_NAME})\s*\]"
                    rf"|\(\s*(?P<round>{_NAME})\s*\)|\*\s*(?P<star>{_NAME})\s*\*")


def protect(text: str, keep_unknown: bool) -> tuple[str, list[str]]:
    """``text`` with each tag replaced by `` PLACEHOLDER `` and the tags, in order."""
    if not any(c in text for c in "<[(*"):
        return text, []
    found: list[str] = []
    if "<" in text:
        text = _MARKUP.sub(_markup, text)

    def sub(m: re.Match[str]) -> str:
        name = next(v for v in m.groups() if v is not None)
        canon = emotions.canonical(name)
        if canon is None:
            if m.group("angle") is not None:
                if not keep_unknown:
                    return " "
                canon = "_".join(name.lower().replace("-", " ").split())
            elif m.group("star") is not None:
                return name
            else:
                return m.group()
        found.append(f"<{canon}>")
        return f" {PLACEHOLDER} "

    return _TYPED.sub(sub, text), found


_OPEN_NAME = re.compile(r"<\s*([A-Za-z][\w-]{0,30})\s")


def _markup(m: re.Match[str]) -> str:
    """An opening tag with attributes of a known emotion (``<laugh intensity="2">``) becomes the
    bare tag, which ``_TYPED`` then protects; every other piece of markup becomes a space."""
    opening = _OPEN_NAME.match(m.group())
    if opening and not m.group().rstrip(">").rstrip().endswith("/") \
            and emotions.canonical(opening.group(1)) is not None:
        return f"<{opening.group(1)}>"
    return " "


def restore(text: str, found: list[str]) -> str:
    if not found:
        return text
    it = iter(found)
    return re.sub(PLACEHOLDER, lambda m: next(it, ""), text)
