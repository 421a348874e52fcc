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
    acc: torch.Tensor = field(init=False)
    env: torch.Tensor = field(init=False)
    acc_start: int = 0
    out_pos: int = 0
    finished: bool = False

    def __post_init__(self) -> None:
        cfg = self.config
        self.device = torch.device(self.device)
        self.resampler_tail = torch.zeros(sinc_kernel(cfg.ratio)[1], device=self.device)
        self.y = self.acc = self.env = torch.zeros(0, device=self.device)
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
        self.y = self.y[drop:].clone()
        self.y_start += drop
        return frames

    # --- back end: overlap-add ---------------------------------------------------------------

    def overlap_add(self, frames: torch.Tensor, window_sq: torch.Tensor) -> torch.Tensor:
        """Adds windowed output frames (n, win_size); returns the samples now final."""
        cfg, h, hop = self.config, self.half_win, self.config.hop_size
        n = len(frames)
        if n:
            start = self.frames_out * hop - h
            ola = _ola(frames, hop)
            env = _ola(window_sq.expand(n, -1), hop)
            if len(self.acc) == 0:
                self.acc_start = start
                self.acc, self.env = ola, env
            else:
                off, have = start - self.acc_start, len(self.acc)
                overlap = have - off  # < len(ola): a frame reaches past the tail
                self.acc = torch.cat([self.acc[:off], self.acc[off:] + ola[:overlap], ola[overlap:]])
                self.env = torch.cat([self.env[:off], self.env[off:] + env[:overlap], env[overlap:]])
            self.frames_out += n
        if self.finished and self.frames_out == self.total_frames:
            end = self.y_total
        else:
            end = self.frames_out * hop - h
        lo, hi = self.out_pos - self.acc_start, end - self.acc_start
        if hi <= lo:
            return self.acc.new_zeros(0)
        out = self.acc[lo:hi] / self.env[lo:hi].clamp_min(1e-11)
        self.acc, self.env = self.acc[hi:].clone(), self.env[hi:].clone()
        self.acc_start, self.out_pos = end, end
        return out

    @property
    def total_frames(self) -> int:
        """Frames of the whole utterance (known once it finished)."""
        if self.y_total <= self.half_win:
            return 0
        return 1 + self.y_total // self.config.hop_size


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
    x_all = torch.from_numpy(np.concatenate([w.x16 for w in works]).astype(np.float32, copy=False))
    x_all = x_all.to(packed.device)
    pieces, starts, counts, keep, pos, offset = [], [], [], [], 0, 0
    zeros = torch.zeros(width, device=packed.device)
    for w, n_in in zip(works, lens):
        tail = w.state.resampler_tail
        parts = [tail, x_all[pos:pos + n_in]] + ([zeros] if w.final else [])
        pos += n_in
        length = sum(len(p) for p in parts)
        n_out = max(0, length - 2 * width)
        pieces += parts
        starts.append(np.arange(offset + 0, offset + n_out))
        counts.append(n_out)
        keep.append((offset + n_out, offset + length))
        offset += length
    big = torch.cat(pieces)
    for w, (a, b) in zip(works, keep):
        w.state.resampler_tail = big[a:b].clone() if not w.final else zeros[:0]
    if not sum(counts):
        return [big[:0] for _ in works]
    sel = np.concatenate(starts)
    flat = fir_upsample(big, taps, width)  # valid windows of the concatenation, interleaved
    if len(sel) * ratio != len(flat):
        rows = torch.from_numpy(sel).to(packed.device)
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
            starts.append(np.arange(offset, offset + outs))
            out_lens.append(outs)
            keep_from.append(offset + max(0, length - TAIL))
            offset += length
        self.length = offset
        self.starts = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        self.out_lens = out_lens
        self.keep_from = keep_from
        self.offsets = np.cumsum([0] + [t + n + (HALF if f else 0) for t, n, f in self.parts])


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
            for i, w in enumerate(works):
                if not finals[i]:
                    w.state.tails[stage] = big[:, plan.keep_from[i]:plan.offsets[i + 1]].clone()
            if not len(plan.starts):
                new = big[:, :0, :cfg.channels] if stage == 0 else big[:, :0]
                new_lens = plan.out_lens
                continue
            span = big.shape[1] - TAIL
            select = None if len(plan.starts) == span else torch.from_numpy(plan.starts).to(dev)
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
        pieces, pos_in, pos_out, residual = [], 0, 0, []
        for w, n_in, n_out in zip(works, counts, new_lens):
            tail = w.state.log_amp_tail
            la = log_amp[pos_in:pos_in + n_in]
            pos_in += n_in
            joined = la if tail is None else torch.cat([tail, la])
            residual.append(joined[:n_out])
            w.state.log_amp_tail = joined[n_out:].clone()
        out_frames = None
        if sum(new_lens):
            log_amp_wb = torch.cat(residual) + mag
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
        pos, outs = 0, []
        for w, n_out in zip(works, new_lens):
            chunk = out_frames[pos:pos + n_out] if n_out else window.new_zeros(0, cfg.win_size)
            pos += n_out
            if w.final and w.state.total_frames == 0:
                # shorter than half a window: nothing to extend, pass the resampled audio on
                outs.append(w.state.y)
            else:
                outs.append(w.state.overlap_add(chunk, packed.window_sq))
        joined = torch.cat(outs).cpu().numpy() if outs else np.zeros(0, np.float32)
    for w, piece in zip(works, np.split(joined, np.cumsum([len(o) for o in outs])[:-1])):
        w.out = piece
