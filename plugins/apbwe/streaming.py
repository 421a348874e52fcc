"""Exact streaming AP-BWE, batched across streams.

The generator is local in time: every operation is per STFT frame except nine kernel-7
convolutions (the embedding and one depthwise convolution per block), so an output frame
depends on 27 input frames each side. Instead of re-running overlapping windows, each stream
keeps, for each of those convolutions, the last 6 frames of its input (3 zero frames at the
start, as the convolution's own padding). A step appends the new frames, runs the convolution
only where its window is complete and carries the tail over; at the end of the stream 3 zero
frames close each convolution. The STFT framing keeps 160 samples of look-ahead (half the
window, reflected at both ends as ``torch.stft(center=True)`` does) and the inverse STFT
overlap-adds into a carried tail, so window overlap is the crossfade between steps. The result
equals whole-utterance processing up to float rounding, and a step costs only its new frames.

Look-ahead from input to output: 7 input samples (resampler) + 160 samples (STFT half window)
+ 27 frames x 80 + 160 samples (inverse STFT) = about 52 ms at 48 kHz.

Many streams are processed in one batch without padding: their frames are concatenated along
time, each convolution is evaluated only at window positions that lie inside one stream's
frames (an index gather), and the per-frame layers (LayerNorm, Linear, GELU) run on all frames
of all streams as one matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from veena.plugins.apbwe.dsp import fir_upsample, sinc_kernel, stable_phase
from veena.plugins.apbwe.model import KERNEL, LOG_EPS, APBWEConfig, APBWEGenerator

HALF = KERNEL // 2
TAIL = KERNEL - 1  # frames a convolution carries over between steps


def to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array (samples, gather indices) on ``device``.

    A copy from pageable memory waits for the kernels queued before it. Pinned memory with
    ``non_blocking`` avoids that wait, but on an H100 it made no clear difference to
    throughput (within run-to-run noise) and tripled the process's CPU time, so the plain
    copy stays."""
    return torch.from_numpy(a).to(device)


def range_index(starts, lengths) -> np.ndarray:
    """The concatenation of ``arange(s, s + n)`` for each start and length, vectorized."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if not len(lengths):
        return np.zeros(0, np.int64)
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(np.asarray(starts, dtype=np.int64) - offsets, lengths) + \
        np.arange(int(lengths.sum()), dtype=np.int64)


class PackedWeights:
    """The generator's weights rearranged for the batched step, on ``device`` in ``dtype``.

    Mag and phase stacks are stacked on a leading axis of 2 so each layer is one batched
    matrix product (``torch.baddbmm``) for both."""

    def __init__(self, model: APBWEGenerator, device: torch.device | str, dtype: torch.dtype) -> None:
        cfg = self.config = model.config
        self.device = torch.device(device)
        self.dtype = dtype
        c = cfg.channels

        def put(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(device=self.device, dtype=dtype).contiguous()

        def pair(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return put(torch.stack([a, b]))

        pre_m, pre_p = model.conv_pre_mag, model.conv_pre_pha
        # (2, K, bins, C): tap k of the embedding as a bins x C matrix
        self.pre_w_taps = pair(pre_m.weight.permute(2, 1, 0), pre_p.weight.permute(2, 1, 0))
        self.pre_b = pair(pre_m.bias, pre_p.bias)[:, None]
        self.pre_ln = (pair(model.norm_pre_mag.weight, model.norm_pre_pha.weight)[:, None],
                       pair(model.norm_pre_mag.bias, model.norm_pre_pha.bias)[:, None])
        self.blocks = []
        for bm, bp in zip(model.convnext_mag, model.convnext_pha):
            self.blocks.append(dict(
                dw_w=pair(bm.dwconv.weight[:, 0], bp.dwconv.weight[:, 0])[:, None],  # (2,1,C,K)
                dw_b=pair(bm.dwconv.bias, bp.dwconv.bias)[:, None],
                dw_conv=put(torch.cat([bm.dwconv.weight, bp.dwconv.weight])),  # (2C, 1, K)
                dw_b_flat=put(torch.cat([bm.dwconv.bias, bp.dwconv.bias])),
                ln_w=pair(bm.norm.weight, bp.norm.weight)[:, None],
                ln_b=pair(bm.norm.bias, bp.norm.bias)[:, None],
                w1=pair(bm.pwconv1.weight.t(), bp.pwconv1.weight.t()),
                b1=pair(bm.pwconv1.bias, bp.pwconv1.bias)[:, None],
                w2=pair(bm.pwconv2.weight.t(), bp.pwconv2.weight.t()),
                b2=pair(bm.pwconv2.bias, bp.pwconv2.bias)[:, None],
                gamma=pair(bm.gamma, bp.gamma)[:, None],
            ))
        self.post_ln = (pair(model.norm_post_mag.weight, model.norm_post_pha.weight)[:, None],
                        pair(model.norm_post_mag.bias, model.norm_post_pha.bias)[:, None])
        self.mag_w = put(model.linear_post_mag.weight.t())
        self.mag_b = put(model.linear_post_mag.bias)
        self.pha_w = put(torch.cat([model.linear_post_pha_r.weight, model.linear_post_pha_i.weight]).t())
        self.pha_b = put(torch.cat([model.linear_post_pha_r.bias, model.linear_post_pha_i.bias]))
        self.window = torch.hann_window(cfg.win_size, device=self.device)
        self.window_sq = (self.window ** 2)[None]
        taps, self.resampler_width = sinc_kernel(cfg.ratio)
        self.resampler_taps = torch.from_numpy(taps).to(self.device)
        self.pad = ((cfg.n_fft - cfg.win_size) // 2, cfg.n_fft - cfg.win_size - (cfg.n_fft - cfg.win_size) // 2)
        self.zeros_in = torch.zeros(2, HALF, cfg.bins, device=self.device, dtype=dtype)
        self.zeros_hidden = torch.zeros(2, HALF, c, device=self.device, dtype=dtype)


@dataclass(eq=False)
class StreamState:
    """One stream's carried state, on the model's device: resampler tail, high-rate samples
    not yet framed, convolution tails, overlap-add tail."""

    config: APBWEConfig
    device: torch.device = torch.device("cpu")
    resampler_tail: torch.Tensor = field(init=False)
    """Low-rate samples the resampler still needs (starts as its left zero padding)."""
    y: torch.Tensor = field(init=False)
    """High-rate input not yet framed, starting at absolute sample ``y_start``."""
    y_start: int = 0
    y_total: int = 0
    """High-rate input samples received so far."""
    next_frame: int = 0
    frames_out: int = 0
    tails: list[torch.Tensor | None] = field(init=False)
    """Per convolution stage: its carried input frames (None = the 3 zero frames of the start)."""
    log_amp_tail: torch.Tensor | None = None
    """Input log-amplitude frames whose output is not out yet (the amplitude head's residual)."""
    ola_tail: torch.Tensor | None = None
    """Overlap-add sums not final yet, as a frame at index ``frames_out - 1`` whose first hop
    (already sent) is zero; None = zeros."""
    env_tail: torch.Tensor | None = None
    """The same for the sum of squared windows that normalizes the overlap-add."""
    out_pos: int = 0
    finished: bool = False

    def __post_init__(self) -> None:
        cfg = self.config
        self.device = torch.device(self.device)
        self.resampler_tail = torch.zeros(sinc_kernel(cfg.ratio)[1], device=self.device)
        self.y = torch.zeros(0, device=self.device)
        self.tails = [None] * (1 + cfg.layers)
        self.half_win = cfg.win_size // 2

    # --- front end: cut frames from the resampled signal ---------------------------------------

    def take_frames(self, new: torch.Tensor, final: bool) -> torch.Tensor:
        """Appends high-rate samples; returns the raw (unwindowed) frames now complete,
        shape (n, win_size)."""
        if self.finished:
            raise RuntimeError("stream already finished")
        cfg, h = self.config, self.half_win
        none = self.y.new_zeros(0, cfg.win_size)
        started = self.y_total > h
        self.y_total += len(new)
        self.y = torch.cat([self.y, new]) if len(self.y) else new
        if not started and self.y_total > h:
            # reflect at the start, as centered STFT does: y[-k] = y[k]
            self.y = torch.cat([self.y[1:h + 1].flip(0), self.y])
            self.y_start = -h
        if final:
            self.finished = True
            if self.y_total <= h:
                return none
            # reflect at the end: y[M-1+k] = y[M-1-k]
            self.y = torch.cat([self.y, self.y[-h - 1:-1].flip(0)])
            last = self.y_total // cfg.hop_size
        else:
            if self.y_total <= h:
                return none
            last = (self.y_total - h) // cfg.hop_size
        n = last + 1 - self.next_frame
        if n <= 0:
            return none
        first = self.next_frame * cfg.hop_size - h - self.y_start
        seg = self.y[first:first + (n - 1) * cfg.hop_size + cfg.win_size]
        frames = seg.unfold(0, cfg.win_size, cfg.hop_size)
        self.next_frame += n
        drop = self.next_frame * cfg.hop_size - h - self.y_start
        self.y = self.y[drop:]  # a view; the next block's concatenation copies it
        self.y_start += drop
        return frames

    @property
    def total_frames(self) -> int:
        """Frames of the whole utterance (known once it finished)."""
        if self.y_total <= self.half_win:
            return 0
        return 1 + self.y_total // self.config.hop_size


def _overlap_add(packed: PackedWeights, works: list[Work], frames: torch.Tensor | None,
                 counts: list[int]) -> list[torch.Tensor]:
    """Overlap-adds every stream's new output frames (windowed, ``counts[i]`` of them, in
    order in ``frames``) onto its carried tail, normalizes by the summed squared window, and
    returns each stream's samples that are now final. All streams go through one ``fold``:
    each stream's frames follow its tail frame, with three empty frames between streams so
    that none reaches into the next."""
    cfg = packed.config
    hop, win, h = cfg.hop_size, cfg.win_size, cfg.win_size // 2
    reach = win // hop - 1  # frames a frame overlaps on each side
    zero = packed.window.new_zeros(1, win)
    gap = packed.window.new_zeros(reach, win)
    acc_parts, env_parts, emit, tails, pos_in, g = [], [], [], [], 0, 0
    for w, n in zip(works, counts):
        st = w.state
        acc_parts += [zero if st.ola_tail is None else st.ola_tail[None]]
        env_parts += [zero if st.env_tail is None else st.env_tail[None]]
        if n:
            acc_parts.append(frames[pos_in:pos_in + n])
            env_parts.append(packed.window_sq.expand(n, -1))
            pos_in += n
        acc_parts.append(gap)
        env_parts.append(gap)
        origin = (st.frames_out - 1) * hop - h  # absolute sample of this stream's local 0
        st.frames_out += n
        done = st.finished and st.frames_out == st.total_frames
        end = st.y_total if done else st.frames_out * hop - h
        base = g * hop - origin
        emit.append((base + st.out_pos, base + end) if end > st.out_pos else (0, 0))
        st.out_pos = max(st.out_pos, end)
        tails.append(None if st.finished else ((g + n) * hop, (g + n) * hop + win))
        g += 1 + n + reach
    acc_frames, env_frames = torch.cat(acc_parts), torch.cat(env_parts)
    acc, env = _ola(acc_frames, hop), _ola(env_frames, hop)
    out = acc / env.clamp_min(1e-11)
    pieces = _gather(out, 0, emit)
    for w, a_tail, e_tail in zip(works, _gather(acc, 0, tails), _gather(env, 0, tails)):
        if a_tail is not None:
            a_tail[:hop] = 0.0  # sent already
            e_tail[:hop] = 0.0
            w.state.ola_tail, w.state.env_tail = a_tail, e_tail
    return pieces


def _ola(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """Overlap-add of (n, win) frames at ``hop``: ((n - 1) * hop + win,) samples."""
    n, win = frames.shape
    out = F.fold(frames.t().unsqueeze(0), output_size=(1, (n - 1) * hop + win),
                 kernel_size=(1, win), stride=(1, hop))
    return out.reshape(-1)


def _upsample(packed: PackedWeights, works: list[Work]) -> list[torch.Tensor]:
    """Every stream's new low-rate samples through the training resampler, in one pass over
    the streams' concatenated buffers; returns each stream's new high-rate
    samples and keeps the resampler tails."""
    taps, width = packed.resampler_taps, packed.resampler_width
    ratio = taps.shape[0]
    lens = [len(w.x16) for w in works]
    x_all = to_device(np.concatenate([w.x16 for w in works]).astype(np.float32, copy=False),
                      packed.device)
    pieces, starts, counts, keep, pos, offset = [], [], [], [], 0, 0
    zeros = torch.zeros(width, device=packed.device)
    for w, n_in in zip(works, lens):
        tail = w.state.resampler_tail
        parts = [tail, x_all[pos:pos + n_in]] + ([zeros] if w.final else [])
        pos += n_in
        length = sum(len(p) for p in parts)
        n_out = max(0, length - 2 * width)
        pieces += parts
        starts.append(offset)
        counts.append(n_out)
        keep.append((offset + n_out, offset + length))
        offset += length
    big = torch.cat(pieces)
    for w, tail in zip(works, _gather(big, 0, [None if w.final else r for w, r in zip(works, keep)])):
        w.state.resampler_tail = zeros[:0] if tail is None else tail
    if not sum(counts):
        return [big[:0] for _ in works]
    sel = range_index(starts, counts)
    flat = fir_upsample(big, taps, width)  # valid windows of the concatenation, interleaved
    if len(sel) * ratio != len(flat):
        rows = to_device(sel, packed.device)
        flat = flat.view(-1, ratio).index_select(0, rows).reshape(-1)
    return list(torch.split(flat, [c * ratio for c in counts]))


@dataclass(eq=False)
class Work:
    """One stream's share of a batched step."""

    state: StreamState
    x16: np.ndarray
    final: bool
    frames: torch.Tensor | None = None
    out: np.ndarray | None = None


def _layer_norm(x: torch.Tensor, ln: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], eps=1e-6) * ln[0] + ln[1]


def _pick(x: torch.Tensor, select: torch.Tensor | None) -> torch.Tensor:
    """The rows (time positions) of ``x`` whose windows lie inside one stream."""
    return x if select is None else x.index_select(1, select)


def _conv_pre(big: torch.Tensor, packed: PackedWeights, span: int,
              select: torch.Tensor | None) -> torch.Tensor:
    """The kernel-7 embedding convolution as seven shifted matrix products (no im2col copy)."""
    out = torch.baddbmm(packed.pre_b, big[:, 0:span], packed.pre_w_taps[:, 0])
    for k in range(1, KERNEL):
        out.baddbmm_(big[:, k:k + span], packed.pre_w_taps[:, k])
    return _pick(out, select)


def _depthwise(big: torch.Tensor, b: dict[str, torch.Tensor], span: int) -> torch.Tensor:
    """Depthwise kernel-7 convolution along time of (2, L, C) frames: (2, L - 6, C)."""
    w = b["dw_w"]
    if big.dtype == torch.float32 or big.device.type != "cpu":
        out = torch.addcmul(b["dw_b"], big[:, 0:span], w[..., 0])
        for k in range(1, KERNEL):
            out.addcmul_(big[:, k:k + span], w[..., k])
        return out
    # CPU half precision: oneDNN's grouped convolution is faster and accumulates in float32
    two, length, c = big.shape
    x = F.conv1d(big.transpose(1, 2).reshape(1, two * c, length), b["dw_conv"], b["dw_b_flat"],
                 groups=two * c)
    return x.view(two, c, span).transpose(1, 2)


class _Plan:
    """Where each stream's frames lie in one convolution stage's concatenated input."""

    def __init__(self, tail_lens: list[int], new_lens: list[int], finals: list[bool]) -> None:
        self.parts: list[tuple[int, int, bool]] = list(zip(tail_lens, new_lens, finals))
        starts, out_lens, keep_from, offset = [], [], [], 0
        for tail, new, final in self.parts:
            length = tail + new + (HALF if final else 0)
            outs = max(0, length - TAIL)
            starts.append(offset)
            out_lens.append(outs)
            keep_from.append(offset + max(0, length - TAIL))
            offset += length
        self.length = offset
        self.starts = range_index(starts, out_lens)
        self.out_lens = out_lens
        self.keep_from = keep_from
        self.offsets = np.cumsum([0] + [t + n + (HALF if f else 0) for t, n, f in self.parts])


def _gather(t: torch.Tensor, dim: int, ranges: list[tuple[int, int] | None], whole: bool = False):
    """Copies of ``t``'s slices ``ranges`` along ``dim``, made in one gather (one kernel
    instead of one per stream); each result is a view into the gathered tensor, or with
    ``whole`` the gathered tensor itself (the slices in order)."""
    spans = [r for r in ranges if r is not None]
    total = sum(b - a for a, b in spans)
    if not spans or total == 0:
        if whole:
            return t.narrow(dim, 0, 0)
        return [t.narrow(dim, 0, 0) if r is not None else None for r in ranges]
    idx = range_index([a for a, _ in spans], [b - a for a, b in spans])
    picked = t.index_select(dim, to_device(idx, t.device))
    if whole:
        return picked
    out, pos = [], 0
    for r in ranges:
        if r is None:
            out.append(None)
        else:
            out.append(picked.narrow(dim, pos, r[1] - r[0]))
            pos += r[1] - r[0]
    return out


FFT_ROWS = 256


def _rfft_rows(frames: torch.Tensor, n_fft: int) -> torch.Tensor:
    """``rfft`` of each row, in fixed batches of ``FFT_ROWS`` rows.

    Bit-identical spectra for a frame whether it is computed alone, in a stream's block or
    in a whole utterance matter: the bins above the narrow band are empty up to rounding, so
    their phase (a model input) is rounding noise, and a GPU FFT rounds differently for
    different batch sizes. With one batch size every frame's spectrum is computed the same
    way, so streaming equals whole-utterance processing on a GPU as it does on CPU."""
    n = len(frames)
    padded = F.pad(frames, (0, 0, 0, -n % FFT_ROWS))
    return torch.cat([torch.fft.rfft(padded[i:i + FFT_ROWS], n=n_fft)
                      for i in range(0, len(padded), FFT_ROWS)])[:n]


def _irfft_rows(spec: torch.Tensor, n_fft: int) -> torch.Tensor:
    """``irfft`` of each row, in fixed batches of ``FFT_ROWS`` rows (as ``_rfft_rows``)."""
    n = len(spec)
    padded = F.pad(spec, (0, 0, 0, -n % FFT_ROWS))
    return torch.cat([torch.fft.irfft(padded[i:i + FFT_ROWS], n=n_fft)
                      for i in range(0, len(padded), FFT_ROWS)])[:n]


def run_step(packed: PackedWeights, works: list[Work]) -> None:
    """Runs one batched step: each ``Work``'s new low-rate samples in, its final high-rate
    samples (``work.out``) out."""
    cfg, dev, dtype = packed.config, packed.device, packed.dtype
    with torch.inference_mode():
        for w, y_new in zip(works, _upsample(packed, works)):
            w.frames = w.state.take_frames(y_new, w.final)
        counts = [len(w.frames) for w in works]
        window = packed.window
        if sum(counts):
            raw = torch.cat([w.frames for w in works])
            spec = _rfft_rows(F.pad(raw * window, packed.pad), cfg.n_fft)
            log_amp = torch.log(spec.abs() + LOG_EPS)
            phase = stable_phase(spec)
            new = torch.stack([log_amp, phase]).to(dtype)  # (2, N, bins)
        else:
            log_amp = torch.zeros(0, cfg.bins, device=dev)
            new = torch.zeros(2, 0, cfg.bins, device=dev, dtype=dtype)
        finals = [w.final for w in works]
        new_lens = counts
        # stage 0: embedding convolution + LayerNorm; stages 1..L: ConvNeXt blocks
        for stage in range(1 + cfg.layers):
            if stage > 0:
                new = new.clone()
                new[0] += new[1]
                new[1] += new[0]
            zeros = packed.zeros_in if stage == 0 else packed.zeros_hidden
            tails = [w.state.tails[stage] if w.state.tails[stage] is not None else zeros
                     for w in works]
            plan = _Plan([t.shape[1] for t in tails], new_lens, finals)
            pieces, pos = [], 0
            for w, tail, n, final in zip(works, tails, new_lens, finals):
                pieces.append(tail)
                if n:
                    pieces.append(new[:, pos:pos + n])
                    pos += n
                if final:
                    pieces.append(zeros)
            big = torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0]
            kept = _gather(big, 1, [None if f else (plan.keep_from[i], plan.offsets[i + 1])
                                    for i, f in enumerate(finals)])
            for w, tail in zip(works, kept):
                if tail is not None:
                    w.state.tails[stage] = tail
            if not len(plan.starts):
                new = big[:, :0, :cfg.channels] if stage == 0 else big[:, :0]
                new_lens = plan.out_lens
                continue
            span = big.shape[1] - TAIL
            select = None if len(plan.starts) == span else to_device(plan.starts, dev)
            if stage == 0:
                x = _conv_pre(big, packed, span, select)
                new = _layer_norm(x, packed.pre_ln)
            else:
                b = packed.blocks[stage - 1]
                residual = _pick(big[:, HALF:HALF + span], select)
                x = _pick(_depthwise(big, b, span), select)
                x = _layer_norm(x, (b["ln_w"], b["ln_b"]))
                x = F.gelu(torch.baddbmm(b["b1"], x, b["w1"]))
                x = torch.baddbmm(b["b2"], x, b["w2"])
                new = residual + b["gamma"] * x
            new_lens = plan.out_lens
        # heads; the amplitude residual is the input log-amplitude of the same frames
        x = _layer_norm(new, packed.post_ln)
        mag = torch.addmm(packed.mag_b, x[0], packed.mag_w).float()
        ri = torch.addmm(packed.pha_b, x[1], packed.pha_w).float()
        pieces, pos_in, spans, res_ranges, tail_ranges = [], 0, 0, [], []
        for w, n_in, n_out in zip(works, counts, new_lens):
            tail = w.state.log_amp_tail
            if tail is not None and len(tail):
                pieces.append(tail)
            if n_in:
                pieces.append(log_amp[pos_in:pos_in + n_in])
            pos_in += n_in
            length = (0 if tail is None else len(tail)) + n_in
            res_ranges.append((spans, spans + n_out))
            tail_ranges.append(None if w.final else (spans + n_out, spans + length))
            spans += length
        joined = torch.cat(pieces) if pieces else log_amp
        residual = _gather(joined, 0, res_ranges, whole=True)
        for w, tail in zip(works, _gather(joined, 0, tail_ranges)):
            if tail is not None:
                w.state.log_amp_tail = tail
        out_frames = None
        if sum(new_lens):
            log_amp_wb = residual + mag
            phase = torch.atan2(ri[:, cfg.bins:], ri[:, :cfg.bins])
            amp = torch.exp(log_amp_wb)
            imag = amp * torch.sin(phase)
            # a real frame's DC and Nyquist bins are real; the phase head does not know that,
            # and GPU inverse FFTs treat the stray imaginary part differently per batch size
            # (CPU ones drop it). Drop it here, so every device and batch agrees.
            imag[:, 0] = 0.0
            imag[:, -1] = 0.0
            com = torch.complex(amp * torch.cos(phase), imag)
            frames = _irfft_rows(com, cfg.n_fft)[:, packed.pad[0]:packed.pad[0] + cfg.win_size]
            out_frames = frames * window
        outs = _overlap_add(packed, works, out_frames, new_lens)
        for i, w in enumerate(works):
            if w.final and w.state.total_frames == 0:
                # shorter than half a window: nothing to extend, pass the resampled audio on
                outs[i] = w.state.y
        joined = torch.cat(outs).cpu().numpy() if outs else np.zeros(0, np.float32)
    for w, piece in zip(works, np.split(joined, np.cumsum([len(o) for o in outs])[:-1])):
        w.out = piece
