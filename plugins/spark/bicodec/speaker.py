"""BiCodec's speaker encoder, for inference: reference clip → 32 global tokens.

Upstream's path is mel spectrogram → ECAPA-TDNN (its frame-level latent, not the pooled
x-vector) → perceiver resampler (32 latents) → FSQ (levels 4^6, one quantizer) → 32 indices in
[0, 4096). Attribute names follow the released ``model.safetensors``
(``speaker_encoder.speaker_encoder.layer2.se_res2block.1.convs.0.weight``,
``speaker_encoder.perceiver_sampler.layers.0.0.to_kv.weight``, ...). The x-vector head (attentive
pooling, its batch norm and linear) and the d-vector projection are not needed for tokens; the
decoder (:mod:`.model`) owns the projection.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from veena.plugins.spark.bicodec.config import BiCodecConfigError
from veena.plugins.spark.bicodec.mel import MelSettings, MelSpectrogram, mel_filterbank
from veena.plugins.spark.bicodec.model import CONFIG_FILE, WEIGHTS_FILE, MissingWeightsError

log = logging.getLogger("veena.spark.bicodec")

ECAPA_CHANNELS = 512  # fixed in upstream (ECAPA_TDNN_GLOB_c512), not a config key
CONTEXT_DIM = 3 * 512  # the ECAPA latent the perceiver attends to
PERCEIVER_DEPTH, HEADS, DIM_HEAD, FF_MULT = 2, 8, 64, 4


@dataclass(frozen=True, slots=True)
class SpeakerEncoderConfig:
    mel: MelSettings
    input_dim: int
    latent_dim: int
    token_num: int
    fsq_levels: tuple[int, ...]
    ref_samples: int  # reference-clip length fed to the encoder
    volume_normalize: bool

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpeakerEncoderConfig:
        root = data.get("audio_tokenizer", data)
        sec, mel = root.get("speaker_encoder"), root.get("mel_params")
        if not isinstance(sec, dict) or not isinstance(mel, dict):
            raise BiCodecConfigError("BiCodec config needs `speaker_encoder` and `mel_params`")
        settings = MelSettings.from_dict(mel)
        rate = int(data.get("sample_rate", settings.sample_rate))
        hop = int(data.get("latent_hop_length", 320))
        # Upstream (BiCodecTokenizer.get_ref_clip): whole latent hops of ref_segment_duration.
        ref = int(rate * float(data.get("ref_segment_duration", 6))) // hop * hop
        cfg = cls(mel=settings, input_dim=int(sec.get("input_dim", settings.n_mels)),
                  latent_dim=int(sec.get("latent_dim", 128)), token_num=int(sec.get("token_num", 32)),
                  fsq_levels=tuple(int(v) for v in sec.get("fsq_levels", [4] * 6)),
                  ref_samples=ref, volume_normalize=bool(data.get("volume_normalize", True)))
        if cfg.input_dim != settings.n_mels:
            raise BiCodecConfigError("speaker_encoder.input_dim must equal mel_params.num_mels")
        if int(sec.get("fsq_num_quantizers", 1)) != 1:
            raise BiCodecConfigError("speaker_encoder.fsq_num_quantizers must be 1")
        if rate != settings.sample_rate:
            raise BiCodecConfigError("sample_rate must equal mel_params.sample_rate")
        return cfg


# --- ECAPA-TDNN (the frame-level part) -------------------------------------------------------

class BatchNorm(nn.Module):
    """Inference batch norm over channels of (B, C, T) with the running statistics."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            False, 0.0, self.eps)


class ConvReluBn(nn.Module):
    """conv → ReLU → batch norm (upstream's order)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, padding: int = 0, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=padding, dilation=dilation)
        self.bn = BatchNorm(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class Res2Conv(nn.Module):
    """Res2Net split: ``scale - 1`` hierarchical conv→ReLU→BN branches, the last split passed on."""

    def __init__(self, channels: int, kernel: int, padding: int, dilation: int, scale: int) -> None:
        super().__init__()
        self.width = channels // scale
        self.convs = nn.ModuleList(nn.Conv1d(self.width, self.width, kernel, padding=padding,
                                             dilation=dilation) for _ in range(scale - 1))
        self.bns = nn.ModuleList(BatchNorm(self.width) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(x, self.width, dim=1)
        out, y = [], parts[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            y = bn(F.relu(conv(y if i == 0 else y + parts[i])))
            out.append(y)
        out.append(parts[len(self.convs)])
        return torch.cat(out, dim=1)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, bottleneck: int = 128) -> None:
        super().__init__()
        self.linear1 = nn.Linear(channels, bottleneck)
        self.linear2 = nn.Linear(bottleneck, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.linear2(F.relu(self.linear1(x.mean(dim=2)))))
        return x * gate.unsqueeze(2)


class SERes2Block(nn.Module):
    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.se_res2block = nn.Sequential(
            ConvReluBn(channels, channels), Res2Conv(channels, 3, dilation, dilation, scale=8),
            ConvReluBn(channels, channels), SqueezeExcite(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.se_res2block(x)


class EcapaFrames(nn.Module):
    """(B, n_mels, T) → (B, 1536, T): ReLU(conv1x1(cat(layer2, layer3, layer4)))."""

    def __init__(self, feat_dim: int, channels: int = ECAPA_CHANNELS) -> None:
        super().__init__()
        self.layer1 = ConvReluBn(feat_dim, channels, kernel=5, padding=2)
        self.layer2 = SERes2Block(channels, 2)
        self.layer3 = SERes2Block(channels, 3)
        self.layer4 = SERes2Block(channels, 4)
        self.conv = nn.Conv1d(3 * channels, CONTEXT_DIM, kernel_size=1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        a = self.layer2(self.layer1(mel))
        b = self.layer3(a)
        c = self.layer4(b)
        return F.relu(self.conv(torch.cat([a, b, c], dim=1)))


# --- perceiver resampler -----------------------------------------------------------------------

class CrossAttention(nn.Module):
    """Latents attend to (latents ++ context); multi-head, no bias, no mask."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        inner = HEADS * DIM_HEAD
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, latents: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, n, _ = latents.shape
        kv = torch.cat([latents, context], dim=1)
        k, v = self.to_kv(kv).chunk(2, dim=-1)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, t.shape[1], HEADS, DIM_HEAD).transpose(1, 2)

        q, k, v = heads(self.to_q(latents)), heads(k), heads(v)
        attn = (torch.matmul(q, k.transpose(-1, -2)) * DIM_HEAD ** -0.5).softmax(dim=-1)
        return self.to_out(torch.matmul(attn, v).transpose(1, 2).reshape(b, n, HEADS * DIM_HEAD))


class GEGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = x.chunk(2, dim=-1)
        return F.gelu(gate) * x


def feed_forward(dim: int) -> nn.Sequential:
    inner = int(dim * FF_MULT * 2 / 3)
    return nn.Sequential(nn.Linear(dim, 2 * inner), GEGLU(), nn.Linear(inner, dim))


class RMSNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) * self.scale * self.gamma


class Perceiver(nn.Module):
    """(B, T, 1536) frames → (B, token_num, latent_dim)."""

    def __init__(self, dim: int, num_latents: int) -> None:
        super().__init__()
        self.proj_context = nn.Linear(CONTEXT_DIM, dim) if dim != CONTEXT_DIM else nn.Identity()
        self.latents = nn.Parameter(torch.zeros(num_latents, dim))
        self.layers = nn.ModuleList(nn.ModuleList([CrossAttention(dim), feed_forward(dim)])
                                    for _ in range(PERCEIVER_DEPTH))
        self.norm = RMSNorm(dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        context = self.proj_context(frames)
        x = self.latents.unsqueeze(0).expand(frames.shape[0], -1, -1)
        for attn, ff in self.layers:
            x = attn(x, context) + x
            x = ff(x) + x
        return self.norm(x)


# --- FSQ ---------------------------------------------------------------------------------------

class FSQIndex(nn.Module):
    """Projects to len(levels) dims, bounds with tanh, rounds: one index per vector."""

    def __init__(self, levels: tuple[int, ...], dim: int) -> None:
        super().__init__()
        self.project_in = nn.Linear(dim, len(levels)) if dim != len(levels) else nn.Identity()
        lv = torch.tensor(levels, dtype=torch.int32)
        self.register_buffer("levels", lv, persistent=False)
        self.register_buffer("basis", torch.cumprod(torch.tensor([1, *levels[:-1]]), 0).to(torch.int32),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.project_in(x).float()
        half_l = (self.levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0)
        bounded = torch.tanh(z + (offset / half_l).atanh()) * half_l - offset
        half = self.levels // 2
        code = bounded.round() / half  # in [-1, 1], as upstream normalises it
        return ((code * half + half) * self.basis).sum(dim=-1).to(torch.int64)


class SpeakerFrontEnd(nn.Module):
    def __init__(self, cfg: SpeakerEncoderConfig) -> None:
        super().__init__()
        self.speaker_encoder = EcapaFrames(cfg.input_dim)
        self.perceiver_sampler = Perceiver(cfg.latent_dim, cfg.token_num)
        self.quantizer = FSQIndex(cfg.fsq_levels, cfg.latent_dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        frames = self.speaker_encoder(mel).transpose(1, 2)
        return self.quantizer(self.perceiver_sampler(frames))


class BiCodecSpeakerEncoder(nn.Module):
    """(B, ref_samples) 16 kHz waveform → (B, token_num) global tokens."""

    def __init__(self, config: SpeakerEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.mel = MelSpectrogram(config.mel)
        self.speaker_encoder = SpeakerFrontEnd(config)

    @property
    def sample_rate(self) -> int:
        return self.config.mel.sample_rate

    def mel_spectrogram(self, wav: torch.Tensor) -> torch.Tensor:
        return self.mel(wav.float())

    def tokenize_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, frames) → (B, token_num) int64."""
        return self.speaker_encoder(mel.to(self.speaker_encoder.quantizer.basis.device,
                                           next(self.parameters()).dtype))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.tokenize_mel(self.mel_spectrogram(wav))

    # --- loading ---------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> BiCodecSpeakerEncoder:
        """Reads ``folder/config.yaml`` and the speaker encoder's tensors of
        ``folder/model.safetensors``; fp32 (the FSQ rounding is precision-sensitive)."""
        from safetensors import safe_open

        folder = Path(folder)
        try:
            data = yaml.safe_load((folder / CONFIG_FILE).read_text("utf-8"))
        except FileNotFoundError as exc:
            raise BiCodecConfigError(f"{folder / CONFIG_FILE} does not exist") from exc
        config = SpeakerEncoderConfig.from_dict(data)
        weights = folder / WEIGHTS_FILE
        if not weights.is_file():
            raise FileNotFoundError(f"BiCodec weights not found: {weights}")
        with safe_open(str(weights), framework="pt") as f:
            wanted = [k for k in f.keys() if k.startswith(("speaker_encoder.", "mel_transformer."))]
            state = {k: f.get_tensor(k) for k in wanted}
        model = cls(config)
        model.load_released_state(state)
        return model.to(device).eval().requires_grad_(False)

    def load_released_state(self, state: dict[str, torch.Tensor]) -> None:
        """Takes this encoder's tensors from a released state dict; others (the x-vector head,
        the d-vector projection, ``num_batches_tracked``) are ignored. Missing or mis-shaped
        tensors are one error listing them; a stored mel filterbank that is not the one
        ``mel_params`` describes is an error too (the weights were trained on that front end)."""
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        bad = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
               if k in state and state[k].shape != v.shape]
        if missing or bad:
            parts = ([f"{len(missing)} missing: {', '.join(missing[:20])}"] if missing else []) + \
                    ([f"{len(bad)} with the wrong shape: {', '.join(bad[:20])}"] if bad else [])
            raise MissingWeightsError("BiCodec speaker encoder does not fit the config: "
                                      + "; ".join(parts))
        fb = state.get("mel_transformer.mel_scale.fb")
        if fb is not None and (fb.shape != self.mel.fb.shape
                               or (fb.float() - self.mel.fb).abs().max().item() > 1e-5):
            raise MissingWeightsError("the checkpoint's mel filterbank differs from the one "
                                      "mel_params describes (Slaney scale and norm)")
        self.load_state_dict({k: state[k].float() for k in own}, strict=True)


def random_speaker_state(config: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random speaker-encoder weights under the released key names, scaled (fan-in) so random
    clips give varied tokens; also the mel buffers and ``num_batches_tracked`` the file holds."""
    cfg = SpeakerEncoderConfig.from_dict(config)
    gen = torch.Generator().manual_seed(seed)
    model = BiCodecSpeakerEncoder(cfg)
    state: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        if name.endswith("running_mean"):
            value = 0.1 * torch.randn(t.shape, generator=gen)
        elif name.endswith("running_var"):
            value = 0.5 + torch.rand(t.shape, generator=gen)
        elif name.endswith("bn.weight") or ".bns." in name and name.endswith("weight"):
            value = 0.8 + 0.4 * torch.rand(t.shape, generator=gen)
        elif name.endswith("gamma"):
            value = torch.ones(t.shape)
        elif t.dim() >= 2:
            fan_in = math.prod(t.shape[1:])
            std = 1.0 / math.sqrt(fan_in) if not name.endswith("latents") else 0.3
            value = torch.randn(t.shape, generator=gen) * std
        else:
            value = 0.02 * torch.randn(t.shape, generator=gen)
        state[name] = value.contiguous()
        if name.endswith("running_var"):
            state[name[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(0)
    # The first layer sees raw mel magnitudes (up to tens); keep its output in range.
    state["speaker_encoder.speaker_encoder.layer1.conv.weight"] *= 0.1
    state["mel_transformer.spectrogram.window"] = torch.hann_window(cfg.mel.win_length)
    state["mel_transformer.mel_scale.fb"] = mel_filterbank(cfg.mel)
    return state


def volume_normalize(audio: np.ndarray, coeff: float = 0.2) -> np.ndarray:
    """Upstream's ``audio_volume_normalize``: lift very quiet clips to a 0.1 peak, then scale so
    the 90th–99th percentile of the significant (> 0.01) magnitudes averages ``coeff`` (gain
    clamped to [0.1, 10]), never past full scale."""
    mags = np.sort(np.abs(audio))
    if mags[-1] < 0.1:
        audio = audio / max(mags[-1], 1e-3) * 0.1
    mags = mags[mags > 0.01]  # of the clip before the lift, as upstream does
    n = mags.shape[0]
    if n <= 10:
        return audio
    audio = audio * np.clip(coeff / np.mean(mags[int(0.9 * n): int(0.99 * n)]), 0.1, 10)
    peak = np.max(np.abs(audio))
    return audio / peak if peak > 1 else audio


def reference_clip(audio: np.ndarray, length: int) -> np.ndarray:
    """The first ``length`` samples, the clip repeated end to end first if it is shorter."""
    if len(audio) < length:
        audio = np.tile(audio, length // len(audio) + 1)
    return audio[:length]
