"""The decoder-only BiCodec: (global tokens, semantic tokens) → 16 kHz waveform."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from veena.plugins.spark.bicodec.config import BiCodecConfig
from veena.plugins.spark.bicodec.modules import (Prenet, SemanticQuantizer, SpeakerDecoder,
                                                 WaveGenerator, fsq_codebook)

log = logging.getLogger("veena.spark.bicodec")

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"


class MissingWeightsError(KeyError):
    """The checkpoint lacks tensors the decoder needs (or has them in the wrong shape)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class BiCodecDecoder(nn.Module):
    """Semantic codebook + projection, speaker FSQ decode + projection, prenet, wave generator."""

    def __init__(self, config: BiCodecConfig) -> None:
        super().__init__()
        self.config = config
        q, s, p, w = config.quantizer, config.speaker, config.prenet, config.wave
        self.quantizer = SemanticQuantizer(q.input_dim, q.codebook_size, q.codebook_dim)
        self.speaker_encoder = SpeakerDecoder(s.fsq_levels, s.latent_dim, s.token_num, s.out_dim)
        self.prenet = Prenet(p.input_channels, p.vocos_dim, p.vocos_intermediate_dim,
                             p.vocos_num_layers, p.out_channels, p.condition_dim,
                             len(p.sample_ratios), p.use_tanh_at_final)
        self.decoder = WaveGenerator(w.input_channel, w.channels, w.rates, w.kernel_sizes)

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def speaker_embedding(self, global_tokens: torch.Tensor) -> torch.Tensor:
        """(B, 32) global token values → (B, out_dim) d-vector. Computed once per voice."""
        return self.speaker_encoder(global_tokens)

    def decode_with_embedding(self, semantic_tokens: torch.Tensor, d_vector: torch.Tensor) -> torch.Tensor:
        """(B, T) semantic token values and (B, D) d-vectors → (B, T * hop) waveform."""
        z = self.quantizer(semantic_tokens)
        x = self.prenet(z, d_vector) + d_vector.unsqueeze(-1)
        return self.decoder(x).squeeze(1)

    def forward(self, semantic_tokens: torch.Tensor, global_tokens: torch.Tensor) -> torch.Tensor:
        return self.decode_with_embedding(semantic_tokens, self.speaker_embedding(global_tokens))

    # --- loading ---------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> BiCodecDecoder:
        """Loads ``folder/config.yaml`` and ``folder/model.safetensors`` (the released layout)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        config = BiCodecConfig.load(folder / CONFIG_FILE)
        weights = folder / WEIGHTS_FILE
        if not weights.is_file():
            raise FileNotFoundError(f"BiCodec weights not found: {weights}")
        with torch.device("meta"):
            model = cls(config)
        model.load_released_state(load_file(str(weights)), device=device)
        return model.to(dtype=dtype).eval().requires_grad_(False)

    def load_released_state(self, state: dict[str, torch.Tensor],
                            device: str | torch.device = "cpu") -> None:
        """Takes this decoder's tensors from a released state dict.

        Weight-normalised layers may come as ``weight_g``/``weight_v`` (the released files) or as
        ``parametrizations.weight.original0/1`` (newer torch); both are folded into ``weight``.
        Keys the decoder does not use (encoder, speaker encoder front end, postnet, mel
        transform, training buffers) are ignored. A missing or mis-shaped tensor is an error
        that lists every offender.
        """
        own = {**dict(self.named_parameters()), **dict(self.named_buffers())}
        persistent = set(self.state_dict().keys())
        tensors: dict[str, torch.Tensor] = {}
        missing, bad_shape = [], []
        for name, param in own.items():
            if name not in persistent:
                continue
            tensor = _find(state, name)
            if tensor is None:
                missing.append(name)
            elif tuple(tensor.shape) != tuple(param.shape):
                bad_shape.append(f"{name} {tuple(tensor.shape)} != {tuple(param.shape)}")
            else:
                tensors[name] = tensor
        if missing or bad_shape:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing: {', '.join(missing[:20])}"
                             + (" ..." if len(missing) > 20 else ""))
            if bad_shape:
                parts.append(f"{len(bad_shape)} with the wrong shape: {', '.join(bad_shape[:20])}")
            raise MissingWeightsError("BiCodec checkpoint does not fit the config: " + "; ".join(parts))
        used = {k for name in tensors for k in _source_keys(name)}
        ignored = [k for k in state if k not in used]
        log.debug("BiCodec: loaded %d tensors, ignored %d encoder/training keys",
                  len(tensors), len(ignored))
        self.load_state_dict({k: v.to(device=device, dtype=torch.float32) for k, v in tensors.items()},
                             strict=True, assign=True)
        # Non-persistent buffers (the FSQ code table) were created on the meta device.
        self.speaker_encoder.codes = fsq_codebook(self.config.speaker.fsq_levels).to(device)


def _source_keys(name: str) -> tuple[str, ...]:
    if name.endswith(".weight"):
        base = name[: -len(".weight")]
        return (name, f"{base}.weight_g", f"{base}.weight_v",
                f"{base}.parametrizations.weight.original0",
                f"{base}.parametrizations.weight.original1")
    return (name,)


def _find(state: dict[str, torch.Tensor], name: str) -> torch.Tensor | None:
    if name in state:
        return state[name]
    if not name.endswith(".weight"):
        return None
    base = name[: -len(".weight")]
    for g_key, v_key in ((f"{base}.weight_g", f"{base}.weight_v"),
                         (f"{base}.parametrizations.weight.original0",
                          f"{base}.parametrizations.weight.original1")):
        if g_key in state and v_key in state:
            return fold_weight_norm(state[g_key], state[v_key])
    return None


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``g * v / ||v||`` with the norm over every dimension but the first (torch's ``dim=0``)."""
    g32, v32 = g.float(), v.float()
    norm = v32.reshape(v32.shape[0], -1).norm(dim=1).reshape(-1, *([1] * (v32.dim() - 1)))
    return v32 * (g32 / norm)
