"""The estimated alignment of ``plugins/elevenlabs/alignment.py`` on hand-made chunk timings."""

from __future__ import annotations

import pytest

from veena.plugins.elevenlabs.alignment import STARTS, TOTAL, Aligner, chunk_spans


class FakeJob:
    """Only what the aligner reads: text, chunks and state."""

    def __init__(self, text: str, chunks: list[str], starts: dict[int, float],
                 total: float | None) -> None:
        self.text, self.chunks = text, chunks
        self.state = {STARTS: starts, **({TOTAL: total} if total is not None else {})}


def test_spans_follow_chunk_starts_and_end_with_the_audio() -> None:
    job = FakeJob("Ab. Cde.", ["Ab.", "Cde."], {0: 0.0, 1: 0.6}, 1.4)
    assert chunk_spans(job) == [(0.0, 0.6), (0.6, 1.4)]


def test_only_chunks_followed_by_a_started_one_are_complete_mid_stream() -> None:
    job = FakeJob("Ab. Cde. F.", ["Ab.", "Cde.", "F."], {0: 0.0, 1: 0.6}, None)
    assert chunk_spans(job) == [(0.0, 0.6)]


def test_without_chunk_starts_spans_follow_lengths() -> None:
    job = FakeJob("Ab. Cdefg.", ["Ab.", "Cdefg."], {0: 0.0}, 0.9)
    (a, b), (c, d) = chunk_spans(job)
    assert (a, b, c, d) == pytest.approx((0.0, 0.3, 0.3, 0.9))  # lengths 3 : 6


def test_pieces_cover_the_text_once_in_order() -> None:
    job = FakeJob("Ab. Cd.", ["Ab.", "Cd."], {0: 0.0}, None)
    aligner = Aligner(job)
    assert aligner.take() is None  # no chunk complete yet
    job.state[STARTS][1] = 0.3
    original, normalized = aligner.take()
    assert normalized["characters"] == list("Ab.")
    assert normalized["character_end_times_seconds"] == [0.1, 0.2, 0.3]
    job.state[TOTAL] = 0.6
    rest_original, rest = aligner.take()
    assert rest["characters"] == list(" Cd.")
    assert rest["character_start_times_seconds"] == [0.3, 0.3, 0.4, 0.5]
    assert "".join(original["characters"] + rest_original["characters"]) == "Ab. Cd."
    assert rest_original["character_end_times_seconds"][-1] == 0.6
