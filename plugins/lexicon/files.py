"""Lexicon files (TOML, or ``word<TAB>spoken form`` lines) and their reload when they change."""

from __future__ import annotations

import logging
import os
import tomllib
from pathlib import Path
from typing import Any

from veena.platform.errors import ConfigError
from veena.plugins.lexicon.matcher import Entry, Matcher

log = logging.getLogger("veena.lexicon")

CASE_COLUMN = {"case_sensitive": True, "case_insensitive": False}
"""The optional third column of a TSV line."""


def parse_tsv(text: str, where: str, case_sensitive: bool) -> list[Entry]:
    """``word<TAB>spoken form[<TAB>case_sensitive|case_insensitive]`` a line; blank lines and
    lines starting with ``#`` are skipped."""
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cols = line.rstrip("\r\n").split("\t")
        if len(cols) not in (2, 3) or not cols[0].strip():
            raise ValueError(f"{where}:{n}: expected `word<TAB>spoken form` (and optionally "
                             f"<TAB>case_sensitive or case_insensitive), got {len(cols)} "
                             f"column(s)")
        cs = case_sensitive
        if len(cols) == 3:
            mode = cols[2].strip().lower()
            if mode not in CASE_COLUMN:
                raise ValueError(f"{where}:{n}: third column must be one of "
                                 f"{sorted(CASE_COLUMN)}, not {cols[2]!r}")
            cs = CASE_COLUMN[mode]
        entries.append(Entry(cols[0].strip(), cols[1].strip(), cs))
    return entries


def parse_toml(text: str, where: str, case_sensitive: bool) -> list[Entry]:
    """``[words]`` maps a word to its spoken form, or to ``{spoken = ..., case_sensitive =
    ...}``; a top-level ``case_sensitive`` sets the file's default."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    unknown = set(doc) - {"words", "case_sensitive"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; a lexicon has `words` "
                         f"and optionally `case_sensitive`")
    default = doc.get("case_sensitive", case_sensitive)
    words = doc.get("words", {})
    if not isinstance(default, bool) or not isinstance(words, dict):
        raise ValueError(f"{where}: `case_sensitive` must be true/false and `words` a table")
    entries = []
    for word, value in words.items():
        entries.append(_toml_entry(word, value, default, where))
    return entries


def _toml_entry(word: str, value: Any, default: bool, where: str) -> Entry:
    if isinstance(value, str):
        return Entry(word, value, default)
    if isinstance(value, dict) and isinstance(value.get("spoken"), str) \
            and set(value) <= {"spoken", "case_sensitive"} \
            and isinstance(value.get("case_sensitive", default), bool):
        return Entry(word, value["spoken"], value.get("case_sensitive", default))
    raise ValueError(f"{where}: words.{word!r} must be a string or "
                     f"{{spoken = \"...\", case_sensitive = true/false}}")


def parse(path: Path, text: str, case_sensitive: bool) -> list[Entry]:
    """A lexicon file's entries by its suffix: ``.toml``, else TSV."""
    if path.suffix.lower() == ".toml":
        return parse_toml(text, str(path), case_sensitive)
    return parse_tsv(text, str(path), case_sensitive)


class LexiconFile:
    """One file, compiled, re-read when its modification time, size or inode changes (one
    ``stat`` a request). A file that breaks while the server runs keeps its last good
    contents (a warning is logged); one that is broken or missing at start-up stops it."""

    def __init__(self, path: str, language: str | None, case_sensitive: bool) -> None:
        self.path = Path(path)
        self.language = language
        self.case_sensitive = case_sensitive
        self._stamp: tuple[int, int, int] | None = None
        try:
            self.matcher = self._load()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"invalid configuration: plugins.lexicon: cannot read lexicon "
                              f"{exc}") from exc

    def _stat(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _load(self) -> Matcher:
        stamp = self._stat()
        matcher = Matcher(parse(self.path, self.path.read_text(encoding="utf-8"),
                                self.case_sensitive))
        self._stamp = stamp
        return matcher

    def current(self) -> Matcher:
        """The matcher for the file as it is now."""
        try:
            if self._stat() != self._stamp:
                self.matcher = self._load()
                log.info("lexicon %s reloaded: %d entries", self.path, self.matcher.size)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            log.warning("lexicon %s not reloaded, keeping the previous version: %s",
                        self.path, exc)
            try:
                self._stamp = self._stat()  # warn once per change, not on every request
            except OSError:
                pass
        return self.matcher
