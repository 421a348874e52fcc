"""Signal path around the generator: the training resampler, STFT framing and the reference
whole-utterance enhancement that streaming is measured against.

The model was trained on narrow-band audio brought to 48 kHz by a windowed-sinc resampler
(Hann window, 6 zero crossings, cutoff 0.99 of the lower Nyquist, zero padding at the ends:
``torchaudio.functional.resample``'s defaults). The same filter is rebuilt here in numpy, so
torchaudio is not needed and the model sees what it was trained on.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

ZERO_CROSSINGS = 6
ROLLOFF = 0.99


@lru_cache(maxsize=8)
def sinc_kernel(ratio: int) -> tuple[np.ndarray, int]:
    """(taps, width) of the upsampler by an integer ``ratio``: output sample ``ratio*i + j``
    is ``sum_k x[i + k - width] * taps[j, k]`` over ``k = 0 .. 2*width``."""
    cutoff = ROLLOFF  # of the input Nyquist, in input-sample units
    width = math.ceil(ZERO_CROSSINGS / cutoff)
    offsets = np.arange(-width, width + 1, dtype=np.float64)
    phase = np.arange(ratio, dtype=np.float64)[:, None] / ratio
    t = (offsets[None, :] - phase) * cutoff
    t = np.clip(t, -ZERO_CROSSINGS, ZERO_CROSSINGS)
    window = np.cos(t * math.pi / (2 * ZERO_CROSSINGS)) ** 2
    taps = np.sinc(t) * window * cutoff
    return taps.astype(np.float32), width


def fir_upsample(padded, taps, width: int):
    """The resampler over zero-padded torch signals ``(..., length)``: ``(..., ratio * (length -
    2 * width))`` samples.

    Shifted multiply-adds in a fixed order rather than a convolution, so each output sample is
    computed the same way whatever the signal's length (streaming cuts it anywhere) and
    whatever else is in the batch."""
    span = padded.shape[-1] - 2 * width
    out = taps[:, :1] * padded[..., None, 0:span]  # (..., ratio, span)
    for k in range(1, 2 * width + 1):
        out.addcmul_(taps[:, k:k + 1], padded[..., None, k:k + span])
    return out.transpose(-1, -2).reshape(*padded.shape[:-1], -1)  # sample ratio*i + j


def upsample(x: np.ndarray, ratio: int) -> np.ndarray:
    """The whole signal through the training resampler (zero padding at both ends)."""
    import torch

    taps, width = sinc_kernel(ratio)
    padded = torch.from_numpy(np.pad(np.asarray(x, dtype=np.float32), width))
    return fir_upsample(padded, torch.from_numpy(taps), width).numpy()


def hann(win_size: int) -> np.ndarray:
    """The periodic Hann window (``torch.hann_window``'s default)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_size) / win_size)).astype(np.float32)


PHASE_SNAP = 1e-6
"""Imaginary parts within this fraction of the magnitude count as zero for the phase."""


def stable_phase(spec):
    """``torch.angle(spec)`` made independent of rounding where it is a coin toss.

    Bins on the real axis (DC and Nyquist of every frame, every bin of the first frame, which
    the reflect padding makes symmetric) have a phase of 0 or +-pi decided by the sign of a
    zero or a rounding-level imaginary part. That sign differs between FFT batch sizes on a GPU
    (cuFFT), and a 2*pi jump of a phase input changes the output a lot. Here such imaginary
    parts (and negative zeros) become +0, so those bins get 0 or +pi whatever the rounding;
    elsewhere the phase moves by at most ``PHASE_SNAP`` radians."""
    import torch

    real = spec.real + 0.0  # -0.0 -> +0.0
    imag = torch.where(spec.imag.abs() <= PHASE_SNAP * spec.abs(), 0.0, spec.imag)
    return torch.atan2(imag, real)


def enhance_reference(model, x16: np.ndarray, device: str = "cpu", *,
                      original_phase: bool = False) -> np.ndarray:
    """Whole-utterance AP-BWE as the original inference does it (``torch.stft`` and
    ``torch.istft``, centered, reflect padding), trimmed to ``ratio * len(x16)`` samples.
    The input phase is ``stable_phase`` unless ``original_phase`` (plain ``torch.angle``).

    ``model`` is an ``APBWEGenerator``; ``x16`` float samples at the low rate. Needs more than
    n_fft/2 output samples (torch's reflect padding)."""
    import torch

    cfg = model.config
    y = torch.from_numpy(upsample(x16, cfg.ratio)).to(device)
    window = torch.hann_window(cfg.win_size, device=device)
    spec = torch.stft(y[None], cfg.n_fft, hop_length=cfg.hop_size, win_length=cfg.win_size,
                      window=window, center=True, pad_mode="reflect", return_complex=True)
    log_amp = torch.log(spec.abs() + 1e-4)
    phase = torch.angle(spec) if original_phase else stable_phase(spec)
    with torch.no_grad():
        log_amp_wb, phase_wb = model(log_amp, phase)
    amp = torch.exp(log_amp_wb)
    com = torch.complex(amp * torch.cos(phase_wb), amp * torch.sin(phase_wb))
    out = torch.istft(com, cfg.n_fft, hop_length=cfg.hop_size, win_length=cfg.win_size,
                      window=window, center=True, length=len(y))
    return out[0].cpu().numpy()
