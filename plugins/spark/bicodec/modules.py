"""The building blocks of BiCodec's decode path, written for inference only.

Attribute names follow the released ``model.safetensors`` so that a parameter's dotted path here
is its key in the file (``decoder.model.1.block.2.block.1.weight`` ...). Weight-normalised
convolutions are plain convolutions here: the loader folds ``weight_g``/``weight_v`` into one
``weight`` once, so inference pays nothing for the parametrisation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Snake(nn.Module):
    """Snake activation, ``x + sin²(αx)/α`` per channel (α from the checkpoint)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The 1e-9 guard is part of the trained function; keep it for bit-compatible output.
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


class ResidualUnit(nn.Module):
    """Snake → dilated conv(7) → Snake → conv(1), added to the input."""

    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Snake(dim),
            nn.Conv1d(dim, dim, kernel_size=7, dilation=dilation, padding=3 * dilation),
            Snake(dim),
            nn.Conv1d(dim, dim, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        trim = (x.shape[-1] - y.shape[-1]) // 2
        if trim > 0:
            x = x[..., trim:-trim]
        return x + y


class UpsampleBlock(nn.Module):
    """Snake → transposed conv (×stride, channels halved) → three residual units (dilation 1, 3, 9)."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Snake(in_dim),
            nn.ConvTranspose1d(in_dim, out_dim, kernel_size=kernel_size, stride=stride,
                               padding=(kernel_size - stride) // 2),
            ResidualUnit(out_dim, 1),
            ResidualUnit(out_dim, 3),
            ResidualUnit(out_dim, 9),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class WaveGenerator(nn.Module):
    """DAC-style generator: features at the token rate in, a waveform in [-1, 1] out."""

    def __init__(self, input_channel: int, channels: int, rates: tuple[int, ...],
                 kernel_sizes: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(input_channel, channels, kernel_size=7, padding=3)]
        dim = channels
        for kernel, rate in zip(kernel_sizes, rates):
            layers.append(UpsampleBlock(dim, dim // 2, kernel, rate))
            dim //= 2
        layers += [Snake(dim), nn.Conv1d(dim, 1, kernel_size=7, padding=3), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class AdaLayerNorm(nn.Module):
    """Layer norm whose scale and shift are linear functions of a condition vector."""

    def __init__(self, condition_dim: int, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.scale = nn.Linear(condition_dim, dim)
        self.shift = nn.Linear(condition_dim, dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x, (self.dim,), eps=self.eps)
        return x * self.scale(cond).unsqueeze(1) + self.shift(cond).unsqueeze(1)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv(7) → (Ada)LayerNorm → MLP with GELU → layer scale, added to the input."""

    def __init__(self, dim: int, intermediate_dim: int, condition_dim: int | None) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = (AdaLayerNorm(condition_dim, dim) if condition_dim
                     else nn.LayerNorm(dim, eps=1e-6))
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        y = self.dwconv(x).transpose(1, 2)
        y = self.norm(y, cond) if isinstance(self.norm, AdaLayerNorm) else self.norm(y)
        y = self.pwconv2(self.act(self.pwconv1(y)))
        return x + (self.gamma * y).transpose(1, 2)


class VocosBackbone(nn.Module):
    """Conv(7) embedding, a norm, ConvNeXt blocks and a final layer norm; (B, C, T) → (B, T, dim)."""

    def __init__(self, input_channels: int, dim: int, intermediate_dim: int, num_layers: int,
                 condition_dim: int | None = None) -> None:
        super().__init__()
        self.embed = nn.Conv1d(input_channels, dim, kernel_size=7, padding=3)
        self.norm = (AdaLayerNorm(condition_dim, dim) if condition_dim
                     else nn.LayerNorm(dim, eps=1e-6))
        self.convnext = nn.ModuleList(
            ConvNeXtBlock(dim, intermediate_dim, condition_dim) for _ in range(num_layers))
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(x).transpose(1, 2)
        x = self.norm(x, cond) if isinstance(self.norm, AdaLayerNorm) else self.norm(x)
        x = x.transpose(1, 2)
        for block in self.convnext:
            x = block(x, cond)
        return self.final_layer_norm(x.transpose(1, 2))


class UnitSampling(nn.Module):
    """The released prenet's sampling stage at ratio 1: its three branches are all the identity,
    so it sums the input three times (and transposes (B, T, C) → (B, C, T))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        return x + x + x


class Prenet(nn.Module):
    """Semantic features + speaker condition → decoder features, at the token rate."""

    def __init__(self, input_channels: int, vocos_dim: int, vocos_intermediate_dim: int,
                 vocos_num_layers: int, out_channels: int, condition_dim: int,
                 stages: int, use_tanh_at_final: bool) -> None:
        super().__init__()
        self.linear_pre = nn.Linear(input_channels, vocos_dim)
        self.downsample = nn.Sequential(*(
            nn.Sequential(UnitSampling(),
                          VocosBackbone(vocos_dim, vocos_dim, vocos_intermediate_dim, num_layers=2))
            for _ in range(stages)))
        self.vocos_backbone = VocosBackbone(vocos_dim, vocos_dim, vocos_intermediate_dim,
                                            vocos_num_layers, condition_dim)
        self.linear = nn.Linear(vocos_dim, out_channels)
        self.use_tanh_at_final = use_tanh_at_final

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = self.downsample(self.linear_pre(x.transpose(1, 2))).transpose(1, 2)
        x = self.linear(self.vocos_backbone(x, cond)).transpose(1, 2)
        return torch.tanh(x) if self.use_tanh_at_final else x


class SemanticQuantizer(nn.Module):
    """Semantic token → codebook vector → 1x1 projection up to the feature width."""

    def __init__(self, input_dim: int, codebook_size: int, codebook_dim: int) -> None:
        super().__init__()
        self.codebook = nn.Embedding(codebook_size, codebook_dim)
        self.out_project = (nn.Conv1d(codebook_dim, input_dim, kernel_size=1)
                            if input_dim != codebook_dim else nn.Identity())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out_project(F.embedding(tokens, self.codebook.weight).transpose(1, 2))


class FSQProjection(nn.Module):
    """The residual FSQ's output projection (the only FSQ weights decoding needs)."""

    def __init__(self, codebook_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.project_out = (nn.Linear(codebook_dim, latent_dim)
                            if codebook_dim != latent_dim else nn.Identity())


class SpeakerDecoder(nn.Module):
    """32 global tokens → FSQ codes → latent → one speaker vector (the d-vector)."""

    def __init__(self, levels: tuple[int, ...], latent_dim: int, token_num: int, out_dim: int) -> None:
        super().__init__()
        self.token_num = token_num
        self.quantizer = FSQProjection(len(levels), latent_dim)
        self.project = nn.Linear(latent_dim * token_num, out_dim)
        self.register_buffer("codes", fsq_codebook(levels), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[-1] != self.token_num:
            raise ValueError(f"expected {self.token_num} global tokens, got {tokens.shape[-1]}")
        z = self.quantizer.project_out(self.codes[tokens].to(self.project.weight.dtype))
        # (B, tokens, latent) -> channel-major flattening, as the checkpoint was trained.
        return self.project(z.transpose(1, 2).reshape(z.shape[0], -1))


def fsq_codebook(levels: tuple[int, ...]) -> torch.Tensor:
    """Every FSQ code in index order: digit d of an index (mixed radix ``levels``) maps to
    ``(digit - L//2) / (L//2)``."""
    lv = torch.tensor(levels, dtype=torch.int64)
    basis = torch.cumprod(torch.tensor([1, *levels[:-1]], dtype=torch.int64), dim=0)
    index = torch.arange(math.prod(levels), dtype=torch.int64).unsqueeze(-1)
    digits = (index // basis) % lv
    half = lv // 2
    return (digits - half) / half
