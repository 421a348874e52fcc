"""The WebSocket plugin's segmenter on its own: where text that arrives in pieces is cut, and
that every segment's offsets point at its text in what the client sent."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from veena.plugins.websocket.segmenter import Segmenter


def feed_all(pieces: list[str], **kw) -> tuple[list[str], Segmenter]:
    seg = Segmenter(**kw)
    out = []
    for p in pieces:
        out += [s.text for s in seg.feed(p)]
    return out, seg


def test_sentences_are_cut_as_soon_as_they_are_known():
    pieces = ["Hello", " world.", " Mr.", " Smith is here", "?", " It costs 3.", "5 dollars,",
              " e.g.", " today!", " Then"]
    seg = Segmenter()
    said = [[s.text for s in seg.feed(p)] for p in pieces]
    assert said == [[], ["Hello world."], [], [], ["Mr. Smith is here?"], [], [], [],
                    ["It costs 3.5 dollars, e.g. today!"], []]
    assert seg.flush().text == "Then" and seg.flush() is None


def test_clauses_wait_for_enough_text_and_long_text_is_cut_at_a_space():
    out, _ = feed_all(["Yes, ", "and then we went on walking along the river, ", "slowly"])
    assert out == ["Yes, and then we went on walking along the river,"]
    out, seg = feed_all(["word " * 60], max_chars=50)
    assert all(len(s) <= 50 for s in out) and all(s.split()[-1] == "word" for s in out)


def test_max_wait_flush_keeps_half_a_word_for_later():
    seg = Segmenter()
    seg.feed("no boundary here but half a wo")
    assert seg.flush(whole_words=True).text == "no boundary here but half a"
    seg.feed("rd")
    assert seg.flush().text == "word"


@given(st.lists(st.text(alphabet="ab .,!?\n₹2", max_size=12), max_size=30))
def test_offsets_point_at_the_client_text_and_nothing_is_lost(pieces):
    text = "".join(pieces)
    seg = Segmenter(clause_chars=8, max_chars=20)
    got = []
    for p in pieces:
        got += seg.feed(p)
    if (last := seg.flush()) is not None:
        got.append(last)
    for s in got:
        assert text[s.start:s.end] == s.text and s.text == s.text.strip() and s.text
    assert [s.start for s in got] == sorted(s.start for s in got)
    assert "".join(s.text for s in got).replace(" ", "").replace("\n", "") == \
        text.replace(" ", "").replace("\n", "")
