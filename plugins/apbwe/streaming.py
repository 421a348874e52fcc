"""Exact streaming AP-BWE, batched across streams.

The generator is local in time: every operation is per STFT frame except nine kernel-7
convolutions (the embedding and one depthwise convolution per block), so an output frame
depends on 27 input frames each side. Instead of re-running overlapping windows, each stream
keeps, for each of those convolutions, the last 6 frames of its input (zeros before the start,
as the convolution's own padding). A step appends the new frames and carries the tail over; the
final step adds 27 zero frames that close every convolution. The STFT framing keeps the
unframed samples (reflected at both ends as ``torch.stft(center=True)`` does) and the inverse
STFT overlap-adds into carried sums, so window overlap is the crossfade between steps. The
result equals whole-utterance processing up to float rounding, and a step costs only its new
frames.

Look-ahead from input to output: 7 input samples (resampler) + 160 samples (STFT half window)
+ 27 frames x 80 + 160 samples (inverse STFT) = about 52 ms at 48 kHz.

A step runs many streams as rows of one padded batch (``rows.step_rows``); this module plans
each row's integers on the host, runs the rows (eagerly, or through ``graphs.BucketRunner``'s
CUDA graphs) and hands each stream the output samples that became final.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from veena.plugins.apbwe.dsp import sinc_kernel, upsample
from veena.plugins.apbwe.model import APBWEConfig
from veena.plugins.apbwe.packed import PackedWeights
from veena.plugins.apbwe.rows import BIG, CUT, LR_NEW, META, row_layout, step_rows

if TYPE_CHECKING:
    from veena.plugins.apbwe.graphs import BucketRunner

__all__ = ["PackedWeights", "RowPlan", "StreamState", "Work", "advance", "plan_row", "run_step"]


def to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array (samples, plans) on ``device`` (a plain copy; ``graphs.BucketRunner``
    uses pinned buffers)."""
    return torch.from_numpy(a).to(device)


@dataclass(eq=False)
class StreamState:
    """One stream's progress (host integers) and its carried tensors (one state row on the
    model's device, see ``rows.RowLayout``)."""

    config: APBWEConfig
    row: torch.Tensor | None = None
    """The carried state; None at the start (all zeros)."""
    received: int = 0
    """Low-rate samples received so far."""
    next_frame: int = 0
    out_pos: int = 0
    """High-rate samples sent so far."""
    finished: bool = False
    head: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    """The first low-rate samples, kept while the utterance could still end shorter than half
    a window (it then has no frame, and its output is the resampled input)."""


@dataclass(eq=False)
class Work:
    """One stream's share of a batched step."""

    state: StreamState
    x16: np.ndarray
    final: bool
    out: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class RowPlan:
    """One row of a step, planned on the host."""

    meta: tuple[int, ...]
    """The row's ``rows.META`` integers."""
    lr_count: int
    """Low-rate positions the resampler must produce (columns of the row's input)."""
    count: int
    """Positions each stage computes."""
    emit: tuple[int, int]
    """Range of the row's output samples that are final and not sent yet."""
    stop: int
    """High-rate samples final after this step."""
    short: bool
    """The utterance ends shorter than half a window: no frames, the resampled input is sent."""


def plan_row(state: StreamState, new: int, final: bool) -> RowPlan:
    """The integers of ``state``'s next step with ``new`` low-rate samples."""
    cfg = state.config
    hop, half, ctx, ratio = cfg.hop_size, cfg.win_size // 2, cfg.context_frames, cfg.ratio
    width = sinc_kernel(ratio)[1]
    received = state.received + new
    # high-rate samples known after this step (the resampler lags ``width`` input samples
    # until the final step flushes it)
    total = ratio * (received if final else max(0, received - width))
    cut = 0
    if total > half:
        last = total // hop if final else (total - half) // hop
        cut = max(0, last + 1 - state.next_frame)
    first = state.next_frame
    count = cut + (ctx if final and total > half else 0)
    origin = (first - ctx) * hop - half  # absolute sample of the row's output index 0
    stop = total if final else (first + cut - ctx) * hop - half
    emit = (state.out_pos - origin, stop - origin) if stop > state.out_pos else (0, 0)
    meta = (new, first, cut, count, first + cut if final else BIG,
            ratio * (state.received - width) - cfg.win_size, total - 1 if final else BIG)
    return RowPlan(meta, new + (width if final else 0), count, emit, stop,
                   final and total <= half)


def advance(state: StreamState, plan: RowPlan, x16: np.ndarray, final: bool) -> None:
    """Moves ``state``'s integers past a step planned as ``plan`` (its tensors aside)."""
    keep = state.config.win_size // 2 // state.config.ratio
    if len(state.head) < keep:
        state.head = np.concatenate([state.head, x16[:keep - len(state.head)]])
    state.received += plan.meta[LR_NEW]
    state.next_frame += plan.meta[CUT]
    state.out_pos = max(state.out_pos, plan.stop)
    state.finished = final


def _commit(work: Work, plan: RowPlan, out_row: np.ndarray, row: torch.Tensor) -> None:
    """Hands ``work`` its final samples and moves its stream past the step."""
    st = work.state
    advance(st, plan, work.x16, work.final)
    st.row = None if work.final else row
    if plan.short:
        work.out = upsample(st.head[:st.received], st.config.ratio)
    else:
        work.out = out_row[plan.emit[0]:plan.emit[1]].copy()


def run_rows(packed: PackedWeights, works: list[Work], plans: list[RowPlan]) -> tuple[np.ndarray, torch.Tensor]:
    """The rows at their exact shapes, eagerly: (B, samples) host output, new device state."""
    samples = max(1, max(p.lr_count for p in plans))
    frames = max(1, max(p.count for p in plans))
    x = np.zeros((len(works), samples), np.float32)
    for i, w in enumerate(works):
        x[i, :len(w.x16)] = w.x16
    meta = np.array([p.meta for p in plans], dtype=np.int64).reshape(-1, len(META))
    zero = torch.zeros(row_layout(packed.config).size, device=packed.device)
    state = torch.stack([zero if w.state.row is None else w.state.row for w in works])
    out, new = step_rows(packed, to_device(x, packed.device), to_device(meta, packed.device),
                         state, frames)
    return out.cpu().numpy(), new


def run_step(packed: PackedWeights, works: list[Work], runner: BucketRunner | None = None) -> None:
    """Runs one batched step: each ``Work``'s new low-rate samples in, its final high-rate
    samples (``work.out``) out. With a ``graphs.BucketRunner`` the rows are padded to its
    bucket shapes (and replayed as CUDA graphs on a GPU); without one, or beyond its largest
    bucket, they run eagerly at their exact shapes."""
    if any(w.state.finished for w in works):
        raise RuntimeError("stream already finished")
    if len({id(w.state) for w in works}) != len(works):
        raise ValueError("a stream can have one block per step")
    with torch.inference_mode():
        for w in works:
            w.x16 = np.asarray(w.x16, dtype=np.float32)
        plans = [plan_row(w.state, len(w.x16), w.final) for w in works]
        for group in _batches(plans, runner):
            part, part_plans = [works[i] for i in group], [plans[i] for i in group]
            result = runner.run(part, part_plans) if runner is not None else None
            out, new = result if result is not None else run_rows(packed, part, part_plans)
            for j, (w, plan) in enumerate(zip(part, part_plans)):
                _commit(w, plan, out[j], new[j])


def _batches(plans: list[RowPlan], runner: BucketRunner | None) -> list[list[int]]:
    """Which rows run together: all of them without a runner; with one, rows grouped by the
    block-length bucket each fits alone (a 20 ms block is not padded to 1 s because a 1 s
    block shares the step), at most ``runner.max_batch`` rows a group."""
    if runner is None:
        return [list(range(len(plans)))] if plans else []
    groups: dict[int | None, list[int]] = {}
    for i, p in enumerate(plans):
        groups.setdefault(runner.samples_bucket(p.lr_count, p.count), []).append(i)
    size = runner.max_batch
    return [g[k:k + size] for g in groups.values() for k in range(0, len(g), size)]
