"""Markup, terminal escape sequences and runs of symbols are never spoken (issues 14 and 20).

These inputs hold control characters, which the TSV corpus cannot show; the rest of the markup
cases are in tests/unit/data/normalization_cases.tsv.
"""

from __future__ import annotations

import pytest

from veena.plugins.normalize import TextNormalizer

NORMALIZER = TextNormalizer()


@pytest.mark.parametrize(("text", "expected"), [
    ("\x1b[31mError:\x1b[0m disk full", "Error: disk full"),
    ("\x1b[1;32mOK\x1b[K done", "OK done"),
    ("build ^[[33mwarning^[[0m here", "build warning here"),
    ("\x1b]0;my title\x07Ready.", "Ready."),
    ("\x1b]8;;https://veena.ai\x1b\\link\x1b]8;;\x1b\\ text", "link text"),
    ("a\x1b(Bb \x1bMc", "ab c"),
    ("\x9b31mred", "red"),
])
def test_terminal_escape_sequences_are_never_spoken(text: str, expected: str) -> None:
    assert NORMALIZER.normalize_for(text, "en") == expected


@pytest.mark.parametrize("text", [
    "<foo><bar/></baz>", "</whisper>", "<br/>", "<br />", '<p class="x">', "<!-- note -->",
    "<?xml version='1.0'?>", "<!DOCTYPE html>", "</ laugh >",
])
def test_markup_alone_leaves_nothing_to_say(text: str) -> None:
    assert NORMALIZER.normalize_for(text, "en") == ""
    assert NORMALIZER.normalize_for(f"Hello {text} there.", "en") == "Hello there."


@pytest.mark.parametrize("text", ["=====", "#$%&", "$$$", "₹₹₹", "-->", "*****", "~~", "||",
                                  "/////", "___"])
def test_runs_of_symbols_are_never_read(text: str) -> None:
    for lang, word in (("en", "Go"), ("hi", "चलो"), ("te", "పద")):
        assert NORMALIZER.normalize_for(f"{word} {text} {word}", lang) == f"{word} {word}"
