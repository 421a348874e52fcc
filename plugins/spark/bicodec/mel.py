"""The speaker encoder's mel front end, in plain torch.

Upstream computes it with ``torchaudio.transforms.MelSpectrogram(sample_rate, n_fft, win_length,
hop_length, f_min, f_max, n_mels=..., power=1, norm="slaney", mel_scale="slaney")``: a centred,
reflect-padded STFT with a periodic Hann window of ``win_length`` zero-padded to ``n_fft``, the
magnitude (power 1, no log), then a Slaney-scale, Slaney-normalised triangular filterbank. This
module reproduces exactly that without torchaudio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True, slots=True)
class MelSettings:
    """``audio_tokenizer.mel_params`` of the released config."""

    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 640
    hop_length: int = 320
    f_min: float = 10.0
    f_max: float | None = None
    n_mels: int = 128

    @classmethod
    def from_dict(cls, mel: dict[str, Any]) -> MelSettings:
        return cls(sample_rate=int(mel.get("sample_rate", 16000)), n_fft=int(mel["n_fft"]),
                   win_length=int(mel.get("win_length", mel["n_fft"])),
                   hop_length=int(mel["hop_length"]), f_min=float(mel.get("mel_fmin", 0.0)),
                   f_max=None if mel.get("mel_fmax") is None else float(mel["mel_fmax"]),
                   n_mels=int(mel["num_mels"]))


_F_SP = 200.0 / 3  # Slaney: linear below 1 kHz (3 mels per 200 Hz) ...
_MIN_LOG_HZ, _MIN_LOG_MEL = 1000.0, 15.0
_LOGSTEP = math.log(6.4) / 27.0  # ... logarithmic above it


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale (librosa ``htk=False``, torchaudio ``mel_scale="slaney"``)."""
    mel = hz / _F_SP
    log_part = _MIN_LOG_MEL + torch.log(hz.clamp_min(_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(hz >= _MIN_LOG_HZ, log_part, mel)


def _hz_to_mel_scalar(hz: float) -> float:
    """The same in double precision, as torchaudio computes the band edges."""
    if hz < _MIN_LOG_HZ:
        return hz / _F_SP
    return _MIN_LOG_MEL + math.log(hz / _MIN_LOG_HZ) / _LOGSTEP


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    hz = mel * _F_SP
    log_part = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mel - _MIN_LOG_MEL))
    return torch.where(mel >= _MIN_LOG_MEL, log_part, hz)


def mel_filterbank(s: MelSettings) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) Slaney-normalised triangles (area-normalised: 2 / bandwidth)."""
    f_max = s.f_max if s.f_max is not None else s.sample_rate / 2
    freqs = torch.linspace(0, s.sample_rate // 2, s.n_fft // 2 + 1)
    m = torch.linspace(_hz_to_mel_scalar(s.f_min), _hz_to_mel_scalar(f_max), s.n_mels + 2)
    f_pts = mel_to_hz(m)
    widths = f_pts[1:] - f_pts[:-1]
    rel = f_pts.unsqueeze(0) - freqs.unsqueeze(1)  # (n_freqs, n_mels + 2)
    rising = -rel[:, :-2] / widths[:-1]
    falling = rel[:, 2:] / widths[1:]
    fb = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return fb * (2.0 / (f_pts[2:] - f_pts[:-2])).unsqueeze(0)


class MelSpectrogram(torch.nn.Module):
    """(B, samples) at ``sample_rate`` → (B, n_mels, frames) magnitude mel spectrogram."""

    def __init__(self, settings: MelSettings) -> None:
        super().__init__()
        self.settings = settings
        self.register_buffer("window", torch.hann_window(settings.win_length), persistent=False)
        self.register_buffer("fb", mel_filterbank(settings), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        s = self.settings
        spec = torch.stft(wav, s.n_fft, hop_length=s.hop_length, win_length=s.win_length,
                          window=self.window, center=True, pad_mode="reflect", normalized=False,
                          onesided=True, return_complex=True).abs()
        return torch.matmul(spec.transpose(-1, -2), self.fb).transpose(-1, -2)
