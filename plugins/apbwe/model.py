"""The AP-BWE generator, weight-compatible with the released checkpoints.

AP-BWE (Lu et al., 2024, github.com/yxlu-0102/AP-BWE) extends narrow-band speech that was
first resampled to the target rate. A short-time Fourier transform (n_fft 1024, hop 80, Hann
window of 320, centered) gives log-amplitude and phase spectra; each goes through a Conv1d
embedding (kernel 7) and a LayerNorm, then through ``ConvNeXt_layers`` ConvNeXt blocks, the two
streams adding their states into each other before every block. The amplitude head predicts a
residual added to the input log-amplitude; the phase is the ``atan2`` of two linear heads. The
inverse STFT gives the wide-band waveform.

Module and parameter names match the original, so ``load_state_dict`` takes a checkpoint's
``generator`` entry unchanged. Everything here is per frame except the kernel-7 convolutions,
so the receptive field is ``3 * (1 + layers)`` frames each side (27 frames, 45 ms at 48 kHz).

This module imports torch; the plugin imports it only when it loads a checkpoint.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

KERNEL = 7
"""Kernel size of the embedding and depthwise convolutions (both 'same'-padded)."""
LOG_EPS = 1e-4
"""Added to the magnitude before the log, as in training."""


@dataclass(frozen=True, slots=True)
class APBWEConfig:
    """The ``config.json`` keys the generator and its signal path need."""

    channels: int = 512
    layers: int = 8
    n_fft: int = 1024
    hop_size: int = 80
    win_size: int = 320
    hr_sampling_rate: int = 48000
    lr_sampling_rate: int = 16000

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> APBWEConfig:
        """Reads the original ``config.json`` (training keys that inference ignores may be there)."""
        try:
            return cls(channels=int(data["ConvNeXt_channels"]), layers=int(data["ConvNeXt_layers"]),
                       n_fft=int(data["n_fft"]), hop_size=int(data["hop_size"]),
                       win_size=int(data["win_size"]),
                       hr_sampling_rate=int(data["hr_sampling_rate"]),
                       lr_sampling_rate=int(data["lr_sampling_rate"]))
        except KeyError as exc:
            raise ValueError(f"config.json lacks the key {exc.args[0]!r}") from exc

    @classmethod
    def load(cls, path: str | Path) -> APBWEConfig:
        return cls.from_json(json.loads(Path(path).read_text("utf-8")))

    def to_json(self) -> dict[str, Any]:
        """The original file's layout (inference keys plus the training defaults it carries)."""
        return {
            "num_gpus": 0, "batch_size": 16, "learning_rate": 0.0002, "adam_b1": 0.8,
            "adam_b2": 0.99, "lr_decay": 0.999, "seed": 1234,
            "ConvNeXt_channels": self.channels, "ConvNeXt_layers": self.layers,
            "segment_size": 8000, "n_fft": self.n_fft, "hop_size": self.hop_size,
            "win_size": self.win_size, "hr_sampling_rate": self.hr_sampling_rate,
            "lr_sampling_rate": self.lr_sampling_rate, "num_workers": 4,
            "dist_config": {"dist_backend": "nccl", "dist_url": "tcp://localhost:54321",
                            "world_size": 1},
        }

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def context_frames(self) -> int:
        """Frames each side that one output frame depends on (embedding + every block)."""
        return (KERNEL // 2) * (1 + self.layers)

    @property
    def ratio(self) -> int:
        """Output samples per input sample (3 for 16 -> 48 kHz)."""
        if self.hr_sampling_rate % self.lr_sampling_rate:
            raise ValueError("hr_sampling_rate must be a multiple of lr_sampling_rate")
        return self.hr_sampling_rate // self.lr_sampling_rate

    def flops_per_frame(self) -> float:
        """Multiply-adds x 2 of the network for one STFT frame (both streams)."""
        c, b = self.channels, self.bins
        embed = 2 * (b * c * KERNEL)
        block = 2 * (c * KERNEL + 2 * c * 3 * c)
        heads = 3 * c * b
        return 2.0 * (embed + self.layers * block + heads)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (kernel 7) -> LayerNorm -> Linear(C, 3C) -> GELU -> Linear(3C, C) -> scale,
    added to the input. Parameter names follow the original (``dwconv``, ``norm``, ``pwconv1``,
    ``pwconv2``, ``gamma``)."""

    def __init__(self, dim: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=KERNEL, padding=KERNEL // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 3 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(3 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        y = self.dwconv(x).transpose(1, 2)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class APBWEGenerator(nn.Module):
    """The generator: ``forward(log_amp, phase)`` on (B, n_fft/2+1, T) spectra returns the
    wide-band log-amplitude and phase of the same shape."""

    def __init__(self, config: APBWEConfig) -> None:
        super().__init__()
        self.config = config
        c, bins = config.channels, config.bins
        pad = KERNEL // 2
        self.conv_pre_mag = nn.Conv1d(bins, c, KERNEL, 1, padding=pad)
        self.norm_pre_mag = nn.LayerNorm(c, eps=1e-6)
        self.conv_pre_pha = nn.Conv1d(bins, c, KERNEL, 1, padding=pad)
        self.norm_pre_pha = nn.LayerNorm(c, eps=1e-6)
        scale = 1.0 / config.layers
        self.convnext_mag = nn.ModuleList(ConvNeXtBlock(c, scale) for _ in range(config.layers))
        self.convnext_pha = nn.ModuleList(ConvNeXtBlock(c, scale) for _ in range(config.layers))
        self.norm_post_mag = nn.LayerNorm(c, eps=1e-6)
        self.norm_post_pha = nn.LayerNorm(c, eps=1e-6)
        self.linear_post_mag = nn.Linear(c, bins)
        self.linear_post_pha_r = nn.Linear(c, bins)
        self.linear_post_pha_i = nn.Linear(c, bins)

    def forward(self, log_amp: torch.Tensor, phase: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.norm_pre_mag(self.conv_pre_mag(log_amp).transpose(1, 2)).transpose(1, 2)
        p = self.norm_pre_pha(self.conv_pre_pha(phase).transpose(1, 2)).transpose(1, 2)
        for block_mag, block_pha in zip(self.convnext_mag, self.convnext_pha):
            m = m + p
            p = p + m
            m = block_mag(m)
            p = block_pha(p)
        m = self.norm_post_mag(m.transpose(1, 2))
        log_amp_wb = log_amp + self.linear_post_mag(m).transpose(1, 2)
        p = self.norm_post_pha(p.transpose(1, 2))
        phase_wb = torch.atan2(self.linear_post_pha_i(p), self.linear_post_pha_r(p)).transpose(1, 2)
        return log_amp_wb, phase_wb

    def randomize(self, seed: int = 0) -> APBWEGenerator:
        """Random weights of trained-model scale (for tests and benchmarks: none can be
        downloaded here): truncated-normal 0.02 weights, small random biases and norms, layer
        scale 1/layers as at initialization."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in self.named_parameters():
                if name.endswith("gamma"):
                    param.fill_(1.0 / self.config.layers)
                elif "norm" in name and name.endswith("weight"):
                    param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=g))
                elif name.endswith("bias"):
                    param.copy_(0.02 * torch.randn(param.shape, generator=g))
                else:
                    fan_in = param[0].numel()
                    std = min(0.02, 1.0 / math.sqrt(fan_in))
                    param.copy_(torch.randn(param.shape, generator=g).clamp_(-2, 2) * std)
        return self


def clean_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's generator weights without a ``module.`` prefix (saved from DataParallel)."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state
