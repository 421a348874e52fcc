"""Text processing: the normalize and chunk plugins, the shared emotion tags, the order in which
normalizers run, the switches, and ``veena normalize``.

The corpora are data: tests/unit/data/normalization_cases.tsv (input, language, expected) and
tests/unit/data/chunking_cases.toml.
"""

from __future__ import annotations

import time
import tomllib
import unicodedata
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veena.platform import emotions
from veena.platform.config import parse_config
from veena.platform.registry import Registry
from veena.plugins.chunk import Config as ChunkConfig
from veena.plugins.chunk.sentences import chunk
from veena.plugins.core import UnicodeNormalizer, ordered_normalizers
from veena.plugins.normalize import Config as NormalizeConfig
from veena.plugins.normalize import TextNormalizer
from veena.plugins.normalize.engine import Engine

DATA = Path(__file__).parent / "data"
NORMALIZER = TextNormalizer()
ENGINE = Engine()


def _normalization_cases():
    cases = []
    lines = (DATA / "normalization_cases.tsv").read_text("utf-8").splitlines()
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        lang, text, expected = line.split("\t")
        text = text.replace("\\n", "\n").replace("\\t", "\t")
        expected = expected.replace("\\n", "\n")
        cases.append(pytest.param(None if lang == "auto" else lang, text, expected,
                                  id=f"L{lineno}"))
    return cases


CASES = _normalization_cases()
CHUNK_CASES = tomllib.loads((DATA / "chunking_cases.toml").read_text("utf-8"))["case"]


@pytest.mark.parametrize(("lang", "text", "expected"), CASES)
def test_corpus(lang, text, expected):
    out = NORMALIZER.normalize_for(text, lang)
    assert out == expected
    assert NORMALIZER.normalize_for(out, lang) == out, "normalizing twice changed the text"
    assert unicodedata.is_normalized("NFC", out)


def test_corpus_covers_the_three_languages_and_mixed_text():
    text = (DATA / "normalization_cases.tsv").read_text("utf-8")
    assert len(CASES) >= 300
    for section in ("English", "Hindi", "Telugu", "mixed scripts"):
        assert f"# --- {section}" in text


@pytest.mark.parametrize("case", CHUNK_CASES, ids=[c["name"] for c in CHUNK_CASES])
def test_chunking_corpus(case):
    got = chunk(case["text"], case.get("max_chars", 300), case.get("min_chars", 20),
                case.get("short_chars", 80))
    assert got == case["expected"]


# --- properties ------------------------------------------------------------------------------

FRAGMENTS = [
    "₹", "Rs.", "$", "2,50,000", "1,234,567", "3.14", "-5", "10:30", "AM", "pm", "15/08/2024",
    "2024-03-01", "21st", "5वाँ", "3వ", "km", "kg", "%", "°C", "Dr.", "etc.", "e.g.", "No.",
    "www.veena.ai", "https://x.io/a-b", "help@veena.ai", "@", "&", "+", "=", "#", "*", "_", "~",
    "<laugh>", "[laughs]", "(sighs)", "*giggle*", "< Sigh >", "<foo>", "<", ">", "9876543210",
    "+91", "1/2", "½", "10x12", "1990s", "-", "–", "—", "...", "…", "।", "॥", "?", "!", ".", ",",
    "मेरे", "पास", "हैं", "लाख", "करोड़", "बजे", "నేను", "లక్షలు", "లో", "Hello", "world", "the",
    "१२३", "౧౨", "😀", "\u200d", "\u200c", "\x00", "\n", "\t", "  ", "ि", "్", "\ufeff", "\ud800",
    # issue 20: markup, escapes, symbol runs, ranges, dotted, Roman numerals, fractions + units
    "</whisper>", "<bar/>", '<p class="x">', "<!--", "-->", "\x1b[31m", "^[[0m", "\x1b]0;t\x07",
    "$$", "₹₹₹", "=====", "#$%&", "8am-6pm", "09:30-17:30", "9:00 AM", "1:00 PM", "గంటలకు",
    "8:00", "v2.0.1", "192.168.1.1", "12345678901234567", "COVID-19", "XII", "II", "Chapter",
    "भाग", "Elizabeth", "2nd", "semester", "में", "बार", "2.5", "घंटे", "1½", "kg", "kmలో",
]
TEXTS = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(FRAGMENTS), max_size=30).map(lambda xs: " ".join(xs)),
    st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS, st.sampled_from([None, "en", "hi", "te"]))
def test_normalization_is_idempotent_nfc_and_never_raises(text, lang):
    once = ENGINE.normalize(text, lang)  # the engine itself, not the never-raise wrapper
    assert ENGINE.normalize(once, lang) == once
    assert unicodedata.is_normalized("NFC", once)
    assert not any(c.isdigit() and c.isascii() for c in once), "digits left unspoken"


@settings(max_examples=300, deadline=None)
@given(TEXTS, st.integers(20, 120), st.integers(0, 40), st.integers(0, 100))
def test_chunks_keep_every_word_and_respect_the_limit(text, max_chars, min_chars, short):
    min_chars = min(min_chars, max_chars)
    chunks = chunk(text, max_chars, min_chars, short)
    assert chunks
    if text.split():
        assert all(c.strip() for c in chunks)
        assert "".join(" ".join(chunks).split()) == "".join(text.split())
        assert all(len(c) <= max_chars or " " not in c for c in chunks)


def test_long_input_with_everything_never_raises_and_is_fast():
    text = (" ".join(FRAGMENTS) + " ") * 200  # ~50,000 characters of the worst kind
    assert len(text) > 40_000
    t = time.perf_counter()
    out = NORMALIZER.normalize(text, SimpleNamespace(language=None))
    chunks = chunk(out)
    assert out and chunks
    assert time.perf_counter() - t < 5  # loose: a guard against runaway regexes, not a benchmark


def test_a_failing_rule_keeps_its_text_and_the_request_goes_on(monkeypatch):
    from veena.plugins.normalize import currency

    monkeypatch.setattr(currency, "money", lambda *a, **k: 1 / 0)
    out = NORMALIZER.normalize("It costs ₹500 and 3 apples.", SimpleNamespace(language=None))
    assert "three apples" in out


# --- emotion tags ----------------------------------------------------------------------------

def test_one_canonical_tag_list_with_typed_spellings():
    for tag in ("laugh", "sigh", "giggle", "cough", "angry", "whisper"):
        assert f"<{tag}>" in emotions.TAGS
    assert set(emotions.SPELLINGS.values()) <= set(emotions.CANONICAL)
    for typed, canon in [("Laughs", "laugh"), ("clear-throat", "clear_throat"),
                         ("LAUGHING  HARD", "laugh_harder"), ("sighing", "sigh")]:
        assert emotions.canonical(typed) == canon
    assert emotions.canonical("applause") is None


@pytest.mark.parametrize(("setting", "expected"), [("drop", "Hi there."),
                                                   ("keep", "Hi <stage_left> there.")])
def test_unknown_tags_are_dropped_or_kept_by_config(setting, expected):
    n = TextNormalizer(NormalizeConfig(unknown_tags=setting))
    assert n.normalize_for("Hi <Stage Left> there.") == expected
    assert n.normalize_for(expected) == expected


def test_tags_are_protected_from_every_other_rule():
    n = TextNormalizer(NormalizeConfig(unknown_tags="keep"))
    out = n.normalize_for("<laugh_harder> 5 & [coughs] <x_y>")
    assert out == "<laugh_harder> five and <cough> <x_y>"


def test_emoji_are_dropped_or_kept_by_config():
    assert TextNormalizer().normalize_for("Hi 😀!") == "Hi!"
    assert TextNormalizer(NormalizeConfig(emoji="keep")).normalize_for("Hi 😀!") == "Hi 😀!"


# --- the plugins on their hooks, switches and order ------------------------------------------

def _runtime(normalizers, listed=(), chunk_config=None):
    registry = Registry("normalizer")
    for n in normalizers:
        registry.add(n)
    config = parse_config({"stages": {"normalizers": list(listed)}})
    configs = {"chunk": chunk_config or ChunkConfig()}
    return SimpleNamespace(config=config, normalizers=registry,
                           plugin_config=lambda name: configs.get(name))


class Percent:
    """A third-party-style normalizer: British "per cent" for "%"."""

    name = "percent"

    def normalize(self, text, job):
        return text.replace("%", " per cent")


def _names(runtime):
    return [n.name for n in ordered_normalizers(runtime)]


def test_normalizer_order_defaults_builtins_first_then_others():
    rt = _runtime([Percent(), TextNormalizer(), UnicodeNormalizer()])
    assert _names(rt) == ["unicode", "text", "percent"]


def test_normalizer_order_follows_config():
    rt = _runtime([Percent(), TextNormalizer(), UnicodeNormalizer()], ["unicode", "percent"])
    assert _names(rt) == ["unicode", "percent", "text"]
    rt = _runtime([Percent(), TextNormalizer(), UnicodeNormalizer()], ["percent"])
    assert _names(rt) == ["percent", "unicode", "text"]


def test_per_request_switches_and_chunk_settings():
    from veena.plugins import chunk as chunk_plugin
    from veena.plugins import core

    rt = _runtime([UnicodeNormalizer(), TextNormalizer()],
                  chunk_config=ChunkConfig(max_chars=30, min_chars=0, short_chars=0))
    text = "It costs ₹500. It is cheap. Buy it now, please, before it is gone."
    job = SimpleNamespace(normalize=True, chunking=True, language=None)
    normalized = core.veena_normalize_text(text=text, job=job, runtime=rt)
    assert normalized.startswith("It costs five hundred rupees.")
    assert chunk_plugin.veena_chunk_text(text=normalized, job=job, runtime=rt) == [
        "It costs five hundred rupees.", "It is cheap.", "Buy it now, please,",
        "before it is gone."]
    off = SimpleNamespace(normalize=False, chunking=False, language=None)
    assert core.veena_normalize_text(text=text, job=off, runtime=rt) == text
    assert chunk_plugin.veena_chunk_text(text=text, job=off, runtime=rt) == [text]
    # without the chunk plugin, core's fallback gives the whole text as one chunk
    assert core.veena_chunk_text(text=text, job=job, runtime=rt) == [text]


def test_chunk_settings_are_validated():
    from veena.platform.config import plugin_settings
    from veena.platform.errors import ConfigError

    with pytest.raises(ConfigError, match="plugins.chunk"):
        plugin_settings("chunk", ChunkConfig, {"max_chars": 5})
    with pytest.raises(ConfigError, match="plugins.chunk"):
        plugin_settings("chunk", ChunkConfig, {"min_chars": 500})
    with pytest.raises(ConfigError, match="plugins.normalize"):
        plugin_settings("normalize", NormalizeConfig, {"unknown_tags": "maybe"})


def test_core_unicode_normalizer_keeps_words_and_line_breaks():
    job = SimpleNamespace(language=None)
    out = UnicodeNormalizer().normalize("వెబ్\u200cసైట్  one\x00two\r\n\n\nthree\t four", job)
    assert out == "వెబ్సైట్ one two\nthree four"


_CONSONANTS = st.sampled_from(list("कषतरमनसह") + list("కషతరమనసహ"))
_SYLLABLE = st.tuples(_CONSONANTS, st.lists(_CONSONANTS, max_size=2),
                      st.sampled_from(["", "ा", "ि", "ं", "్", "ు", "ం", "\u200d"])).map(
    lambda t: t[0] + "".join("\u094d" + c if c < "\u0c00" else "\u0c4d" + c for c in t[1])
    + t[2])


@settings(max_examples=200, deadline=None)
@given(st.lists(_SYLLABLE, min_size=1, max_size=40).map("".join), st.integers(20, 40))
def test_forced_splits_fall_on_grapheme_cluster_boundaries(token, max_chars):
    """Checked against the ``regex`` package's ``\\X`` (UAX #29) where it is installed."""
    regex = pytest.importorskip("regex")
    boundaries = {m.end() for m in regex.finditer(r"\X", token)}
    chunks = chunk(token, max_chars, 0, 0)
    assert "".join(chunks) == token
    pos = 0
    for c in chunks[:-1]:
        pos += len(c)
        assert pos in boundaries, (token, chunks)
