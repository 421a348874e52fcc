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


class Upsampler:
    """Streaming integer-ratio upsampler; its output is identical to filtering the whole
    signal at once (zero padding at both ends, ``ratio * len(x)`` samples in all)."""

    def __init__(self, ratio: int) -> None:
        self.ratio = ratio
        self.taps, self.width = sinc_kernel(ratio)
        self._buf = np.zeros(self.width, dtype=np.float32)  # left zero padding

    def push(self, x: np.ndarray, final: bool = False) -> np.ndarray:
        """Feeds input samples; returns every output sample that is now determined."""
        buf = np.concatenate([self._buf, np.asarray(x, dtype=np.float32)])
        if final:
            buf = np.concatenate([buf, np.zeros(self.width, dtype=np.float32)])
        n = len(buf) - 2 * self.width
        if n <= 0:
            self._buf = buf
            return np.zeros(0, dtype=np.float32)
        # a fixed order of element-wise multiply-adds, so the result does not depend on how
        # the input was cut into blocks (a matrix product's rounding depends on its shape)
        out = np.zeros((n, self.ratio), dtype=np.float32)
        for k in range(2 * self.width + 1):
            out += buf[k:k + n, None] * self.taps[:, k]
        out = out.reshape(-1)
        self._buf = buf[n:]
        return out


def upsample(x: np.ndarray, ratio: int) -> np.ndarray:
    """The whole signal through the training resampler."""
    return Upsampler(ratio).push(x, final=True)


def hann(win_size: int) -> np.ndarray:
    """The periodic Hann window (``torch.hann_window``'s default)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_size) / win_size)).astype(np.float32)


def enhance_reference(model, x16: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Whole-utterance AP-BWE exactly as the original inference does it (``torch.stft`` and
    ``torch.istft``, centered, reflect padding), trimmed to ``ratio * len(x16)`` samples.

    ``model`` is an ``APBWEGenerator``; ``x16`` float samples at the low rate. Needs more than
    n_fft/2 output samples (torch's reflect padding)."""
    import torch

    cfg = model.config
    y = torch.from_numpy(upsample(x16, cfg.ratio)).to(device)
    window = torch.hann_window(cfg.win_size, device=device)
    spec = torch.stft(y[None], cfg.n_fft, hop_length=cfg.hop_size, win_length=cfg.win_size,
                      window=window, center=True, pad_mode="reflect", return_complex=True)
    log_amp = torch.log(spec.abs() + 1e-4)
    phase = torch.angle(spec)
    with torch.no_grad():
        log_amp_wb, phase_wb = model(log_amp, phase)
    amp = torch.exp(log_amp_wb)
    com = torch.complex(amp * torch.cos(phase_wb), amp * torch.sin(phase_wb))
    out = torch.istft(com, cfg.n_fft, hop_length=cfg.hop_size, win_length=cfg.win_size,
                      window=window, center=True, length=len(y))
    return out[0].cpu().numpy()
