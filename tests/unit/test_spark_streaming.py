"""Streaming decode arithmetic: window sizes, sample accounting, crossfades, chunk joins, and the
seam error of the default window on a real (tiny) decoder."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.torch_threads import one_torch_thread  # noqa: F401 (autouse fixture)
from veena.plugins.spark.streaming import (ChunkJoiner, StreamingDecoder, WindowPlan, crossfade,
                                           fade_in)

HOP = 320


def pointwise_decode(tokens, hop=HOP):
    """A stand-in decoder whose samples depend only on their own token: any correct window cut
    must reproduce the whole-utterance output exactly."""
    t = np.repeat(np.asarray(tokens, dtype=np.float32), hop)
    return np.sin(t * 0.001 + np.tile(np.arange(hop, dtype=np.float32), len(tokens)) * 0.01)


def run(plan, tokens, push_sizes=None, decode=pointwise_decode):
    dec, out, windows = StreamingDecoder(plan), [], []
    sizes = iter(push_sizes or [])
    i = 0
    while i < len(tokens):
        n = next(sizes, 1)
        dec.push(*tokens[i:i + n])
        i += n
        while (w := dec.next_window()) is not None:
            windows.append(w)
            out.append(dec.accept(w, decode(w.tokens)))
    dec.finish()
    while (w := dec.next_window()) is not None:
        windows.append(w)
        out.append(dec.accept(w, decode(w.tokens)))
    assert dec.done
    return (np.concatenate(out) if out else np.zeros(0, np.float32)), windows


def test_first_block_leaves_once_its_lookahead_exists():
    plan = WindowPlan(left=24, lookahead=24, first_block=10, block=25)
    dec = StreamingDecoder(plan)
    dec.push(*range(33))
    assert dec.next_window() is None
    dec.push(33)
    w = dec.next_window()
    assert (w.start, w.emit_from, w.emit_to, w.stop) == (0, 0, 10, 34)
    assert plan.first_audio_after() == 34


def test_a_shorter_first_lookahead_changes_only_the_first_window():
    plan = WindowPlan(left=24, lookahead=24, first_block=2, first_lookahead=8, block=80)
    dec = StreamingDecoder(plan)
    dec.push(*range(9))
    assert dec.next_window() is None
    dec.push(9)
    first = dec.next_window()
    assert (first.start, first.emit_from, first.emit_to, first.stop) == (0, 0, 2, 10)
    assert plan.first_audio_after() == 10 and plan.window_lengths()[0] == 10
    dec.accept(first, np.zeros(10 * HOP, np.float32))
    dec.push(*range(10, 28))
    assert dec.next_window() is None  # the second block (3 tokens) waits for 24 more
    dec.push(28)
    second = dec.next_window()
    assert (second.start, second.emit_from, second.emit_to, second.stop) == (0, 2, 5, 29)
    assert WindowPlan(first_block=2, first_lookahead=None).first_audio_after() == 26
    with pytest.raises(ValueError, match="crossfade"):
        WindowPlan(first_lookahead=0, crossfade=160)
    with pytest.raises(ValueError, match="first_lookahead"):
        WindowPlan(first_lookahead=-1)


def test_windows_have_constant_size_however_long_the_utterance():
    plan = WindowPlan()
    tokens = list(np.random.default_rng(0).integers(0, 8192, 3000))  # 60 s
    _, windows = run(plan, tokens, push_sizes=[7] * 500)
    sizes = {w.stop - w.start for w in windows[len(plan.window_lengths()):-3]}
    assert sizes == {plan.left + plan.block + plan.lookahead} == {plan.max_window}
    assert max(w.stop - w.start for w in windows) <= plan.max_window
    assert windows[-1].last and not any(w.last for w in windows[:-1])


def test_decoder_memory_is_bounded():
    plan = WindowPlan()
    dec = StreamingDecoder(plan)
    for i in range(5000):
        dec.push(i % 8192)
        while (w := dec.next_window()) is not None:
            dec.accept(w, np.zeros((w.stop - w.start) * HOP, np.float32))
    assert len(dec._tokens) <= plan.max_window + 1


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 260), left=st.integers(0, 30), ahead=st.integers(0, 30),
       first=st.integers(1, 30), block=st.integers(1, 40), xf=st.integers(0, 400),
       first_ahead=st.one_of(st.none(), st.integers(0, 30)),
       pushes=st.lists(st.integers(1, 50), max_size=30))
def test_streamed_output_equals_whole_decode(n, left, ahead, first, block, xf, first_ahead,
                                             pushes):
    """Every sample is emitted exactly once, in order; with a decoder of no reach the streamed
    waveform is the whole-utterance waveform (crossfading identical signals changes nothing)."""
    shortest = ahead if first_ahead is None else min(ahead, first_ahead)
    plan = WindowPlan(left=left, lookahead=ahead, first_block=first, block=block,
                      first_lookahead=first_ahead, crossfade=min(xf, shortest * HOP))
    tokens = list(np.random.default_rng(n).integers(0, 8192, n))
    streamed, windows = run(plan, tokens, pushes)
    assert len(streamed) == n * HOP
    np.testing.assert_allclose(streamed, pointwise_decode(tokens), atol=1e-6)
    assert [w.emit_from for w in windows] == [0, *(w.emit_to for w in windows[:-1])][: len(windows)]


def test_plan_rejects_a_crossfade_longer_than_the_lookahead():
    with pytest.raises(ValueError, match="crossfade"):
        WindowPlan(lookahead=0, crossfade=10)
    with pytest.raises(ValueError):
        WindowPlan(block=0)


def test_accept_checks_what_it_is_given():
    dec = StreamingDecoder(WindowPlan(lookahead=0, crossfade=0, first_block=2))
    dec.push(1, 2, 3)
    w = dec.next_window()
    with pytest.raises(ValueError, match="samples"):
        dec.accept(w, np.zeros(5))
    with pytest.raises(RuntimeError):
        dec.next_window()


def test_crossfade_ramp_and_mix():
    w = fade_in(8)
    assert np.all(np.diff(w) > 0) and 0 < w[0] < 0.1 and 0.9 < w[-1] < 1
    np.testing.assert_allclose(w + w[::-1], 1.0, atol=1e-6)  # complementary: constant gain
    mixed = crossfade(np.ones(8, np.float32), np.zeros(8, np.float32))
    np.testing.assert_allclose(mixed, 1 - w, atol=1e-7)


def test_crossfade_removes_a_step_between_windows():
    """Where two windows disagree, the output moves from one to the other without a jump."""
    plan = WindowPlan(left=2, lookahead=2, first_block=3, block=3, crossfade=160)
    calls = iter(range(100))

    def biased(tokens):  # every window decodes with a different DC offset
        return pointwise_decode(tokens) * 0 + 0.1 * next(calls)

    out, _ = run(plan, list(range(20)), decode=biased)
    assert np.max(np.abs(np.diff(out))) < 0.1 / 160 * 2


def test_chunk_joiner_overlaps_chunks_by_the_crossfade():
    j = ChunkJoiner(samples=100)
    a = j.feed(np.ones(1000, np.float32), chunk_ends=False)
    b = j.feed(np.ones(500, np.float32), chunk_ends=True)  # chunk 1 ends: 100 held back
    c = j.feed(np.zeros(300, np.float32), chunk_ends=False)  # chunk 2 starts: blended
    d = j.feed(np.zeros(0, np.float32), chunk_ends=True)  # an empty piece keeps nothing back
    e = j.feed(np.zeros(200, np.float32), chunk_ends=True)
    f = j.finish()
    assert [len(x) for x in (a, b, c, d, e, f)] == [1000, 400, 300, 0, 100, 100]
    assert np.all(np.diff(c[:100]) < 0) and c[0] > 0.9 and c[99] < 0.1
    total = 1000 + 500 + 300 + 200
    assert sum(len(x) for x in (a, b, c, d, e, f)) == total - 100


def test_chunk_joiner_with_a_first_piece_shorter_than_the_tail():
    j = ChunkJoiner(samples=100)
    j.feed(np.ones(300, np.float32), chunk_ends=True)
    out = j.feed(np.zeros(40, np.float32), chunk_ends=False)
    assert len(out) == 100 and np.all(out[:60] == 1.0) and out[-1] < 0.1


def test_default_window_seam_error_on_a_real_decoder():
    """The default plan on the tiny random decoder stays within a few int16 LSB of a whole
    decode (the released shape's measurement is in docs/benchmarks.md)."""
    torch = pytest.importorskip("torch")
    from veena.plugins.spark.bicodec import BiCodecConfig, BiCodecDecoder
    from veena.plugins.spark.checkpoint import bicodec_config, random_bicodec_state

    cfg = bicodec_config("tiny")
    model = BiCodecDecoder(BiCodecConfig.from_dict(cfg))
    model.load_released_state(random_bicodec_state(cfg, seed=4))
    rng = np.random.default_rng(5)
    tokens = list(rng.integers(0, 8192, 160))
    with torch.inference_mode():
        d = model.speaker_embedding(torch.tensor([list(rng.integers(0, 4096, 32))]))

        def decode(window):
            return model.decode_with_embedding(torch.tensor([list(window)]), d)[0].numpy()

        whole = decode(tokens)
        streamed, windows = run(WindowPlan(), tokens, push_sizes=[3] * 60, decode=decode)
        short, _ = run(WindowPlan(left=4, lookahead=4, crossfade=160), tokens, decode=decode)
    assert len(windows) > 4
    assert np.abs(streamed - whole).max() < 1e-3
    assert np.abs(short - whole).max() > 10 * np.abs(streamed - whole).max()  # context matters


def test_blocks_ramp_up_so_the_audio_sent_covers_the_next_wait():
    plan = WindowPlan(left=24, lookahead=24, first_block=10, block=25, ramp=1.5)
    tokens = list(range(200))
    _, windows = run(plan, tokens, push_sizes=[1] * 200)
    blocks = [w.emit_to - w.emit_from for w in windows]
    assert blocks[:4] == [10, 15, 25, 25]
    sent = np.cumsum(blocks)
    assert all(b <= 1.5 * e for b, e in zip(blocks[1:], sent[:-1]))


def test_window_lengths_are_those_a_long_stream_decodes():
    plan = WindowPlan()
    _, windows = run(plan, list(range(400)), push_sizes=[1] * 400)
    assert set(plan.window_lengths()) == {w.stop - w.start for w in windows[:-2]} == {30, 39, 62, 88}
