"""The pronunciation lexicon: matching (whole words in every script, case modes, longest first,
phrases), both file formats, reload on change, request entries and their bounds, the order
before the number rules, and the edits it reports for word timings."""

from __future__ import annotations

import os
import time

import msgspec
import pytest

from veena.platform.config import VeenaConfig
from veena.platform.errors import ConfigError, VeenaError
from veena.platform.pipeline import decode_body
from veena.platform.plugins import build_runtime
from veena.platform.schemas import (MAX_PRONUNCIATIONS, MAX_SPOKEN_CHARS, MAX_WORD_CHARS,
                                    GenerateRequest, Pronunciation)
from veena.platform.textmap import Rewrites, original_map
from veena.plugins.lexicon import Config, FileConfig, LexiconNormalizer
from veena.plugins.lexicon.files import LexiconFile, parse_toml, parse_tsv
from veena.plugins.lexicon.matcher import Entry, Matcher
from veena.plugins.lexicon.rewrite import apply_edits


def say(entries: list[Entry], text: str) -> str:
    m = Matcher(entries)
    return apply_edits(text, list(m.finditer(text)))


# --- matching ----------------------------------------------------------------------------------

def test_whole_words_only():
    e = [Entry("Veena", "वीणा")]
    assert say(e, "Veena, Veenas, AVeena, Veena's, (Veena)") == \
        "वीणा, Veenas, AVeena, वीणा's, (वीणा)"
    assert say([Entry("C++", "C plus plus")], "C++ and C++11") == "C plus plus and C++11"


def test_markup_and_addresses_are_left_to_the_rules():
    e = [Entry("laugh", "laff"), Entry("veena", "वीणा")]
    assert say(e, "<laugh> I laugh </laugh>") == "<laugh> I laff </laugh>"
    assert say(e, "www.veena.ai, help@veena.ai, /docs/veena/x, Veena. Veena-based veena.") == \
        "www.veena.ai, help@veena.ai, /docs/veena/x, वीणा. वीणा-based वीणा."


def test_devanagari_boundaries_count_vowel_signs_and_viramas():
    e = [Entry("कर्म", "करम")]
    # "कर्मचारी" goes on with a consonant, "कर्मों" with a vowel sign (Mc), neither is the word
    assert say(e, "कर्म कर्मचारी कर्मों निष्कर्म कर्म।") == "करम कर्मचारी कर्मों निष्कर्म करम।"
    # a word ending in a vowel sign is found at all (\b would never match after "ी")
    assert say([Entry("कर्मी", "कर-मी")], "वह कर्मी है, कर्मियों से") == "वह कर-मी है, कर्मियों से"


def test_telugu_boundaries():
    e = [Entry("రాము", "రామూ")]
    assert say(e, "రాము వచ్చాడు, రాముడు కాదు. రాముకి") == "రామూ వచ్చాడు, రాముడు కాదు. రాముకి"
    assert say([Entry("కిలో", "కే జీ")], "ఒక కిలో, కిలోల") == "ఒక కే జీ, కిలోల"


def test_case_modes_per_entry():
    e = [Entry("US", "U S", case_sensitive=True), Entry("us", "uss"), Entry("nasa", "NASA")]
    assert say(e, "US us Us NASA Nasa") == "U S uss uss NASA NASA"
    # a case-sensitive entry in the wrong case: a shorter case-insensitive one still applies
    e = [Entry("Apple Inc", "apple ink", case_sensitive=True), Entry("apple", "A-pull")]
    assert say(e, "apple inc and Apple Inc") == "A-pull inc and apple ink"


def test_longest_entry_first_and_phrases():
    e = [Entry("New York", "NY"), Entry("New York City", "N Y C"), Entry("New", "nu")]
    assert say(e, "New York City, new york, New Yorker, New") == "N Y C, NY, nu Yorker, nu"
    e = [Entry("a", "A"), Entry("ab", "AB"), Entry("abc", "ABC")]
    assert say(e, "a ab abc abcd") == "A AB ABC abcd"


def test_entries_are_matched_in_their_nfc_form():
    # the request text is NFC by now (the ``unicode`` normalizer ran); entries are made so too
    assert say([Entry("Cafe\u0301", "ka-fay")], "Caf\u00e9!") == "ka-fay!"
    assert say([Entry("Ve\u200dena", "x")], "Veena") == "x"  # format characters out


def test_a_thousand_entries_are_one_regex():
    entries = [Entry(f"word{i}", f"w{i}") for i in range(1000)]
    m = Matcher(entries)
    assert m.pattern is not None and m.size == 1000
    assert say(entries, "word7 word999 word1000") == "w7 w999 word1000"


# --- files -------------------------------------------------------------------------------------

def test_tsv_format():
    entries = parse_tsv("# brands\nVeena\tवीणा\n\nAI\tA I\tcase_sensitive\nIST\tI S T\t"
                        "case_insensitive\n", "x.tsv", case_sensitive=False)
    assert entries == [Entry("Veena", "वीणा"), Entry("AI", "A I", True),
                       Entry("IST", "I S T", False)]
    with pytest.raises(ValueError, match=r"x.tsv:2: expected"):
        parse_tsv("a\tb\nno tab here\n", "x.tsv", False)
    with pytest.raises(ValueError, match=r"x.tsv:1: third column"):
        parse_tsv("a\tb\tmaybe\n", "x.tsv", False)


def test_toml_format():
    entries = parse_toml('case_sensitive = true\n[words]\nVeena = "वीणा"\n'
                         '"New York" = { spoken = "nu york", case_sensitive = false }\n',
                         "x.toml", case_sensitive=False)
    assert entries == [Entry("Veena", "वीणा", True), Entry("New York", "nu york", False)]
    with pytest.raises(ValueError, match="unknown key"):
        parse_toml('[word]\na = "b"\n', "x.toml", False)
    with pytest.raises(ValueError, match="must be a string"):
        parse_toml('[words]\na = 3\n', "x.toml", False)


def _rewrite(path, text: str) -> None:
    """Writes and moves the modification time on (a coarse file system could keep it)."""
    path.write_text(text, encoding="utf-8")
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_file_is_reloaded_when_it_changes_and_kept_when_it_breaks(tmp_path, caplog):
    path = tmp_path / "names.tsv"
    path.write_text("Veena\tवीणा\n", encoding="utf-8")
    f = LexiconFile(str(path), None, False)
    first = f.current()
    assert f.current() is first  # unchanged: no re-read
    _rewrite(path, "Veena\tवी-णा\nRao\tराव\n")
    assert f.current().size == 2
    assert f.current().spoken("veena") == "वी-णा"
    _rewrite(path, "broken line without a tab\n")
    assert f.current().size == 2  # the last good version stays
    assert "not reloaded" in caplog.text
    _rewrite(path, "Veena\tवीना\n")
    assert f.current().spoken("Veena") == "वीना"


def test_missing_or_broken_file_stops_start_up(tmp_path):
    with pytest.raises(ConfigError, match="cannot read lexicon"):
        LexiconFile(str(tmp_path / "nope.tsv"), None, False)
    (tmp_path / "bad.toml").write_text("[words\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        LexiconFile(str(tmp_path / "bad.toml"), None, False)


# --- the normalizer ----------------------------------------------------------------------------

def _job(pronunciations=(), language=None):
    from veena.platform.job import Job

    return Job(request_id="t", text="", speaker=None, synthesizer="-", output=None,
               language=language, pronunciations=tuple(pronunciations))


def test_request_entries_come_first_then_language_files_then_the_rest(tmp_path):
    (tmp_path / "all.tsv").write_text("Rao\tRaa-o\nVeena\tVeena-all\n", encoding="utf-8")
    (tmp_path / "hi.tsv").write_text("Rao\tराव\n", encoding="utf-8")
    lex = LexiconNormalizer(Config(files=[FileConfig(str(tmp_path / "all.tsv")),
                                          FileConfig(str(tmp_path / "hi.tsv"), language="hi")]))
    job = _job([Pronunciation("Veena", "वीणा")])
    out = lex.normalize("Veena and Rao met. वीणा और Rao मिले।", job)
    assert out == "वीणा and Raa-o met. वीणा और राव मिले।"
    (step,) = job.state[Rewrites]
    assert step.map is not None and [(p.src_start, p.src_end) for p in step.map.pieces
                                      if not p.exact] == [(0, 5), (10, 13), (27, 30)]


def test_overlapping_words_the_earlier_layer_wins(tmp_path):
    (tmp_path / "all.tsv").write_text("York City\tyork-city\nNew\tnoo\n", encoding="utf-8")
    lex = LexiconNormalizer(Config(files=[FileConfig(str(tmp_path / "all.tsv"))]))
    out = lex.normalize("New York City", _job([Pronunciation("New York", "nu-york")]))
    assert out == "nu-york City"


def test_word_times_of_a_spoken_form_point_at_the_word_it_replaced(tmp_path):
    """The lexicon records its exact map; composed with the later rules (worked out from the
    texts), a word of the final text maps back onto the client's word."""
    from veena.platform.pipeline import Pipeline

    text = "Veena paid ₹5 to Rao in Hyd"
    job = Pipeline(runtime()).prepare(GenerateRequest(text=text, pronunciations=[
        Pronunciation("Hyd", "the city of Hyderabad"), Pronunciation("Veena", "वी णा")]), "t")
    final = job.normalized_text
    assert final == "वी णा paid five rupees to Rao in the city of Hyderabad"
    (step,) = job.state[Rewrites]
    assert step.map._built is None  # nothing asked for word times yet: no map built
    back = original_map(text, final, job.state[Rewrites])
    for word, original in (("णा", "Veena"), ("city", "Hyd"), ("Hyderabad", "Hyd"),
                           ("rupees", "₹5"), ("Rao", "Rao")):
        at = final.index(word)
        s, e = back.source(at, at + len(word))
        assert text[s:e] == original, word


def runtime(lexicon: str | None = None):
    plugins = {"lexicon": {"files": [{"path": lexicon}]}} if lexicon else {}
    cfg = msgspec.convert({"plugins": plugins}, VeenaConfig)
    return build_runtime(cfg)


def test_lexicon_runs_before_the_number_rules_through_the_pipeline(tmp_path):
    from veena.platform.pipeline import Pipeline

    (tmp_path / "lex.toml").write_text('[words]\n"5G" = "five gee"\n"Dr" = "Daktar"\n',
                                       encoding="utf-8")
    pipeline = Pipeline(runtime(str(tmp_path / "lex.toml")))
    names = [n.name for n in __import__("veena.plugins.core", fromlist=["x"])
             .ordered_normalizers(pipeline.runtime)]
    assert names.index("unicode") < names.index("lexicon") < names.index("text")
    req = GenerateRequest(text="Dr. Rao's 5G phone cost ₹500.",
                          pronunciations=[Pronunciation("Rao's", "Raao's")])
    job = pipeline.prepare(req, "t")
    assert job.normalized_text == "Daktar. Raao's five gee phone cost five hundred rupees."
    assert job.pronunciations == (Pronunciation("Rao's", "Raao's"),)


# --- bounds ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("entries", "problem"), [
    ([{"word": f"w{i}", "spoken": "x"} for i in range(MAX_PRONUNCIATIONS + 1)], "entries"),
    ([{"word": "w" * (MAX_WORD_CHARS + 1), "spoken": "x"}], "word has"),
    ([{"word": "w", "spoken": "x" * (MAX_SPOKEN_CHARS + 1)}], "spoken form has"),
    ([{"word": "  ", "spoken": "x"}], "blank word"),
])
def test_bounds_answer_400_with_the_limits(entries, problem):
    body = msgspec.json.encode({"text": "hi", "pronunciations": entries})
    with pytest.raises(VeenaError) as exc:
        decode_body(body, GenerateRequest)
    err = exc.value
    assert (err.status, err.code, err.param) == (400, "invalid_pronunciations", "pronunciations")
    assert problem in err.message
    assert err.details == {"max_entries": MAX_PRONUNCIATIONS, "max_word_chars": MAX_WORD_CHARS,
                           "max_spoken_chars": MAX_SPOKEN_CHARS}


def test_at_the_bounds_is_accepted_and_a_bad_shape_is_invalid_request():
    entries = [{"word": "w" * MAX_WORD_CHARS, "spoken": "x" * MAX_SPOKEN_CHARS}] * \
        MAX_PRONUNCIATIONS
    req = decode_body(msgspec.json.encode({"text": "hi", "pronunciations": entries}),
                      GenerateRequest)
    assert len(req.pronunciations) == MAX_PRONUNCIATIONS
    with pytest.raises(VeenaError) as exc:
        decode_body(b'{"text": "hi", "pronunciations": [{"word": "a"}]}', GenerateRequest)
    assert exc.value.code == "invalid_request" and "spoken" in exc.value.message


def test_request_matchers_are_compiled_once_per_list():
    lex = LexiconNormalizer()
    entries = (Pronunciation("Veena", "वीणा"),)
    t = time.perf_counter()
    assert lex.normalize("Veena", _job(entries)) == "वीणा"
    first = lex._requests[entries]
    lex.normalize("Veena again", _job(entries))
    assert lex._requests[entries] is first and time.perf_counter() - t < 1


def test_a_failing_lexicon_leaves_the_text_as_it_is(tmp_path, caplog):
    (tmp_path / "a.tsv").write_text("Veena\tवीणा\n", encoding="utf-8")
    lex = LexiconNormalizer(Config(files=[FileConfig(str(tmp_path / "a.tsv"))]))

    class Broken:
        language = None

        def current(self):
            raise RuntimeError("disk gone")

    lex.files = [Broken()]
    assert lex.normalize("Veena", _job()) == "Veena" and "lexicon failed" in caplog.text
