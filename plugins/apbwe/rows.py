"""The batched step on padded rows: one stream per row, fixed shapes, no host synchronization.

``step_rows`` takes B streams' new low-rate samples (B, S), one row of integers per stream
(the ``META`` columns, planned on the host by ``streaming.py``) and their carried state
(B, ``RowLayout.size``); it returns (B, ``out_samples(N)``) output samples and the new state.
Every shape depends only on (B, S, N) and no value is read back on the host, so the same
function runs eagerly (CPU: exact shapes) and is captured into a CUDA graph per padded bucket
shape (``graphs.py``). Padding never enters a real row's arithmetic: positions past a row's
real samples or frames are masked to zero, never cut.

Time is absolute per stream. Each of the nine kernel-7 convolutions (embedding, then one per
ConvNeXt block) sees a row of 6 carried input frames followed by N new positions, the step's
new frames delayed by 3 frames per stage before it. So every stage takes and gives N positions,
and every carried tail has exactly 6 frames. Positions outside the utterance (before its first
frame, or the 27 frames after its last that flush the final step) are zeroed, which is the
convolutions' own zero padding. Output frame q of a step is frame ``first - 27 + q``.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from veena.plugins.apbwe.dsp import fir_upsample, sinc_kernel, stable_phase
from veena.plugins.apbwe.model import KERNEL, LOG_EPS, APBWEConfig
from veena.plugins.apbwe.packed import PackedWeights

HALF = KERNEL // 2
TAIL = KERNEL - 1  # frames a convolution carries over between steps
BIG = 1 << 40
"""Stands for "no end yet" in the ``END`` and ``HI_LAST`` columns."""

META = ("LR_NEW", "FIRST", "CUT", "COUNT", "END", "HI_BASE", "HI_LAST")
"""Per-row integers: new low-rate samples; index of the first frame cut this step; frames cut;
positions each stage computes (CUT, plus the 27 flush frames in the final step); one past the
last frame in the final step, else BIG; absolute high-rate sample at index 0 of the row's
high-rate buffer; last high-rate sample of the utterance in the final step, else BIG."""
LR_NEW, FIRST, CUT, COUNT, END, HI_BASE, HI_LAST = range(len(META))
FFT_ROWS = 256


class RowLayout:
    """Where each carried piece lies in a stream's float32 state row: resampler input tail,
    unframed high-rate samples, each stage's 6 input frames (mag and phase), the input
    log-amplitude of the frames still in flight (the amplitude head's residual), and the
    overlap-add and window-envelope sums not final yet."""

    def __init__(self, cfg: APBWEConfig) -> None:
        width = sinc_kernel(cfg.ratio)[1]
        self.shapes: dict[str, tuple[int, ...]] = {
            "lr": (2 * width,), "hi": (cfg.win_size,), "stage0": (2, TAIL, cfg.bins),
            **{f"stage{i}": (2, TAIL, cfg.channels) for i in range(1, cfg.layers + 1)},
            "log_amp": (cfg.context_frames, cfg.bins),
            "acc": (cfg.win_size - cfg.hop_size,), "env": (cfg.win_size - cfg.hop_size,)}
        self.sizes = {k: int(torch.Size(s).numel()) for k, s in self.shapes.items()}
        self.size = sum(self.sizes.values())

    def split(self, state: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of (B, size) state rows as (B, *shape) pieces."""
        pieces = torch.split(state, list(self.sizes.values()), dim=1)
        return {k: p.unflatten(1, self.shapes[k]) for k, p in zip(self.shapes, pieces)}

    def join(self, pieces: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, size) float32 state rows from (B, *shape) pieces."""
        rows = next(iter(pieces.values())).shape[0]
        return torch.cat([pieces[k].reshape(rows, -1).float() for k in self.shapes], dim=1)


@lru_cache(maxsize=8)
def row_layout(cfg: APBWEConfig) -> RowLayout:
    return RowLayout(cfg)


def frames_bound(cfg: APBWEConfig, samples: int) -> int:
    """Most positions (COUNT) a row with at most ``samples`` low-rate samples to resample
    (new ones, plus the resampler's flush in the final step) can need."""
    return (cfg.ratio * samples + cfg.win_size // 2) // cfg.hop_size + 2 + cfg.context_frames


def out_samples(cfg: APBWEConfig, frames: int) -> int:
    """Output samples per row for ``frames`` positions (their overlap-add span)."""
    return (frames - 1) * cfg.hop_size + cfg.win_size


def rfft_rows(frames: torch.Tensor, n_fft: int) -> torch.Tensor:
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


def irfft_rows(spec: torch.Tensor, n_fft: int) -> torch.Tensor:
    """``irfft`` of each row, in fixed batches of ``FFT_ROWS`` rows (as ``rfft_rows``)."""
    n = len(spec)
    padded = F.pad(spec, (0, 0, 0, -n % FFT_ROWS))
    return torch.cat([torch.fft.irfft(padded[i:i + FFT_ROWS], n=n_fft)
                      for i in range(0, len(padded), FFT_ROWS)])[:n]


def _take(t: torch.Tensor, start: torch.Tensor, length: int) -> torch.Tensor:
    """``t[b, start[b] : start[b] + length]`` for every row b of (B, L, ...) ``t``;
    ``start`` is (B, 1)."""
    rows = torch.arange(t.shape[0], device=t.device)[:, None]
    return t[rows, start + torch.arange(length, device=t.device)]


def _valid(meta: torch.Tensor, stages: int, frames: int) -> torch.Tensor:
    """(stages + 1, B, N) masks of the positions that are frames of the utterance: entry s for
    stage s's input (position q is frame ``FIRST - 3 * s + q``), the last for the output."""
    q = torch.arange(frames, device=meta.device)
    delay = torch.arange(0, HALF * (stages + 1), HALF, device=meta.device)[:, None, None]
    t = meta[None, :, FIRST, None] - delay + q
    return (q < meta[None, :, COUNT, None]) & (t >= 0) & (t < meta[None, :, END, None])


def _rows(flat: torch.Tensor, rows: int, frames: int) -> torch.Tensor:
    """A stage's outputs over the concatenated rows, (..., rows * (TAIL + frames) - TAIL, C),
    as (..., rows, frames, C) without a copy: row b's outputs start at b * (TAIL + frames)."""
    *lead, _, c = flat.shape
    *lead_strides, step, one = flat.stride()
    return flat.as_strided((*lead, rows, frames, c),
                           (*lead_strides, (TAIL + frames) * step, step, one))


def _layer_norm(x: torch.Tensor, ln: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """LayerNorm with each stream's own affine weights (``ln``: (2, 1, C) scale and shift)."""
    return torch.addcmul(ln[1], F.layer_norm(x, x.shape[-1:], eps=1e-6), ln[0])


def _conv_pre(big: torch.Tensor, packed: PackedWeights, span: int) -> torch.Tensor:
    """The kernel-7 embedding convolution as seven shifted matrix products (no im2col copy)."""
    out = torch.baddbmm(packed.pre_b, big[:, 0:span], packed.pre_w_taps[:, 0])
    for k in range(1, KERNEL):
        out.baddbmm_(big[:, k:k + span], packed.pre_w_taps[:, k])
    return out


def _depthwise(big: torch.Tensor, b: dict[str, torch.Tensor], span: int,
               how: str) -> torch.Tensor:
    """Depthwise kernel-7 convolution along time of (2, L, C) frames: (2, L - 6, C)."""
    two, length, c = big.shape
    if how == "conv":
        # each stream's (L, C) frames are a channels-last (1, C, 1, L) image: one grouped
        # convolution per stream (cuDNN on a GPU) reads them once, without a transpose
        halves = [F.conv2d(big[i].t()[None, :, None], b["dw_w2d"][i], b["dw_b"][i, 0], groups=c)
                  for i in range(two)]
        return torch.stack([h[0, :, 0].t() for h in halves])
    w = b["dw_w"]
    if big.dtype == torch.float32 or big.device.type != "cpu":
        out = torch.addcmul(b["dw_b"], big[:, 0:span], w[..., 0])
        for k in range(1, KERNEL):
            out.addcmul_(big[:, k:k + span], w[..., k])
        return out
    # CPU half precision: oneDNN's grouped convolution is faster and accumulates in float32
    x = F.conv1d(big.transpose(1, 2).reshape(1, two * c, length), b["dw_conv"], b["dw_b_flat"],
                 groups=two * c)
    return x.view(two, c, span).transpose(1, 2)


def _stage_input(m: torch.Tensor, p: torch.Tensor, tail: torch.Tensor, keep: torch.Tensor,
                 mix: bool) -> torch.Tensor:
    """(2, B, 6 + N, C) rows of a stage's input: each row's 6 carried frames (``tail``,
    (2, B, 6, C)), then the N new positions of the two streams ``m`` and ``p`` (B, N, C), mixed
    as before every ConvNeXt block (``m += p; p += m``) unless the first stage, and zero where
    ``keep`` (B, N) is false."""
    two, rows, _, c = tail.shape
    big = tail.new_empty(two, rows, TAIL + m.shape[1], c)
    big[:, :, :TAIL] = tail
    new = big[:, :, TAIL:]
    if mix:
        torch.add(m, p, out=new[0])
        torch.add(p, new[0], out=new[1])
    else:
        new[0] = m
        new[1] = p
    new.masked_fill_(~keep[None, :, :, None], 0.0)
    return big


def _network(packed: PackedWeights, log_amp: torch.Tensor, phase: torch.Tensor,
             meta: torch.Tensor, valid: torch.Tensor,
             carried: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The generator on (B, N, bins) input spectra (``valid``: ``_valid``'s masks):
    (B, N, bins) amplitude-head output, (B, N, 2 * bins) phase-head real and imaginary parts,
    and each stage's new 6-frame tail."""
    rows, frames, _ = log_amp.shape
    dev = log_amp.device
    tail_at = (torch.arange(rows, device=dev)[:, None],
               meta[:, COUNT, None] + torch.arange(TAIL, device=dev))
    tails, (m, p), y = [], (log_amp, phase), log_amp
    for stage in range(1 + len(packed.blocks)):
        tail = carried[f"stage{stage}"].transpose(0, 1).to(packed.dtype)
        big = _stage_input(m, p, tail, valid[stage], mix=stage > 0)
        tails.append(big[:, tail_at[0], tail_at[1]])
        flat = big.view(2, -1, big.shape[-1])
        span = flat.shape[1] - TAIL
        if stage == 0:
            y = _layer_norm(_conv_pre(flat, packed, span), packed.pre_ln)
        else:
            b = packed.blocks[stage - 1]
            h = _layer_norm(_depthwise(flat, b, span, packed.depthwise), (b["ln_w"], b["ln_b"]))
            h = F.gelu(torch.baddbmm(b["b1"], h, b["w1"]))
            h = torch.baddbmm(b["b2"], h, b["w2"])
            y = torch.addcmul(flat[:, HALF:HALF + span], b["gamma"], h)
        m, p = _rows(y, rows, frames)
    y = _layer_norm(y, packed.post_ln)
    mag = _rows(torch.addmm(packed.mag_b, y[0], packed.mag_w).float(), rows, frames)
    ri = _rows(torch.addmm(packed.pha_b, y[1], packed.pha_w).float(), rows, frames)
    return mag, ri, tails


def step_rows(packed: PackedWeights, x16: torch.Tensor, meta: torch.Tensor,
              state: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One step for B rows: (B, S) new low-rate samples (read up to LR_NEW), (B, len(META))
    int64 plans, (B, RowLayout.size) carried state, N positions per row. Returns the
    (B, out_samples(N)) output (which part is final and unsent is the host's bookkeeping)
    and the new (B, RowLayout.size) state."""
    cfg = packed.config
    hop, win, n_fft, bins = cfg.hop_size, cfg.win_size, cfg.n_fft, cfg.bins
    lay = row_layout(cfg)
    carried = lay.split(state)
    rows, samples = x16.shape
    dev = x16.device
    col = [meta[:, i, None] for i in range(len(META))]

    # front end: resampler, then frames cut from the high-rate samples (reflected at both ends)
    x = torch.where(torch.arange(samples, device=dev) < col[LR_NEW], x16, 0.0)
    lr = torch.cat([carried["lr"], x], dim=1)
    hi = torch.cat([carried["hi"], fir_upsample(lr, packed.resampler_taps,
                                                packed.resampler_width)], dim=1)
    p = col[FIRST] * hop - win // 2 + torch.arange(out_samples(cfg, frames), device=dev)
    p = torch.where(p < 0, -p, p)
    p = torch.where(p > col[HI_LAST], 2 * col[HI_LAST] - p, p)
    seg = hi.gather(1, (p - col[HI_BASE]).clamp(0, hi.shape[1] - 1))
    raw = seg.unfold(1, win, hop)  # (B, N, win)
    spec = rfft_rows(F.pad(raw * packed.window, packed.pad).view(rows * frames, n_fft), n_fft)
    log_amp = torch.log(spec.abs() + LOG_EPS).view(rows, frames, bins)
    phase = stable_phase(spec).view(rows, frames, bins)

    valid = _valid(meta, len(packed.blocks) + 1, frames)
    mag, ri, tails = _network(packed, log_amp, phase, meta, valid, carried)

    # heads: the amplitude residual is the input log-amplitude of the same frames
    la = torch.cat([carried["log_amp"], log_amp], dim=1)
    log_amp_wb = la[:, :frames] + mag
    phase_wb = torch.atan2(ri[..., bins:], ri[..., :bins])
    amp = torch.exp(log_amp_wb)
    imag = amp * torch.sin(phase_wb)
    # a real frame's DC and Nyquist bins are real; the phase head does not know that, and GPU
    # inverse FFTs treat the stray imaginary part differently per batch size (CPU ones drop
    # it). Drop it here, so every device and batch agrees.
    imag[..., 0] = 0.0
    imag[..., -1] = 0.0
    com = torch.complex(amp * torch.cos(phase_wb), imag).view(rows * frames, bins)
    pad0 = packed.pad[0]
    out_frames = irfft_rows(com, n_fft)[:, pad0:pad0 + win].reshape(rows, frames, win)
    keep = valid[-1, :, :, None]  # output frame q is frame FIRST - 27 + q
    out_frames = torch.where(keep, out_frames * packed.window, 0.0)
    env_frames = torch.where(keep, packed.window_sq, 0.0)

    # overlap-add onto the carried sums, normalized by the summed squared window
    sums = _ola(torch.cat([out_frames, env_frames]), hop)
    overlap = win - hop
    sums[:, :overlap] += torch.cat([carried["acc"], carried["env"]])
    acc, env = sums[:rows], sums[rows:]
    out = acc / env.clamp_min(1e-11)

    ola_at = col[CUT] * hop
    new = {"lr": _take(lr, col[LR_NEW], lay.shapes["lr"][0]),
           "hi": _take(hi, cfg.ratio * col[LR_NEW], win),
           **{f"stage{i}": t.transpose(0, 1) for i, t in enumerate(tails)},
           "log_amp": _take(la, col[CUT], cfg.context_frames),
           "acc": _take(acc, ola_at, overlap), "env": _take(env, ola_at, overlap)}
    return out, lay.join(new)


def _ola(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """Overlap-add of (R, N, win) frames at ``hop``: (R, (N - 1) * hop + win) samples."""
    rows, n, win = frames.shape
    out = F.fold(frames.transpose(1, 2), output_size=(1, (n - 1) * hop + win),
                 kernel_size=(1, win), stride=(1, hop))
    return out.reshape(rows, -1)
