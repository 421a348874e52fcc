"""The decoder's view of a released BiCodec ``config.yaml``.

The file nests everything under ``audio_tokenizer``: ``mel_params``, ``encoder``, ``quantizer``,
``speaker_encoder``, ``prenet``, ``postnet`` and ``decoder`` (the wave generator). Decoding needs
four of them; the encoder, the speaker encoder's front end and the postnet are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class BiCodecConfigError(ValueError):
    """The config file is missing a section or asks for something this decoder cannot do."""


@dataclass(frozen=True, slots=True)
class QuantizerConfig:
    input_dim: int
    codebook_size: int
    codebook_dim: int


@dataclass(frozen=True, slots=True)
class SpeakerConfig:
    out_dim: int
    latent_dim: int
    token_num: int
    fsq_levels: tuple[int, ...]
    fsq_num_quantizers: int

    @property
    def codebook_size(self) -> int:
        size = 1
        for level in self.fsq_levels:
            size *= level
        return size


@dataclass(frozen=True, slots=True)
class PrenetConfig:
    input_channels: int
    vocos_dim: int
    vocos_intermediate_dim: int
    vocos_num_layers: int
    out_channels: int
    condition_dim: int
    sample_ratios: tuple[int, ...]
    use_tanh_at_final: bool


@dataclass(frozen=True, slots=True)
class WaveGeneratorConfig:
    input_channel: int
    channels: int
    rates: tuple[int, ...]
    kernel_sizes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BiCodecConfig:
    quantizer: QuantizerConfig
    speaker: SpeakerConfig
    prenet: PrenetConfig
    wave: WaveGeneratorConfig
    sample_rate: int = 16000

    @property
    def hop_length(self) -> int:
        """Audio samples per semantic token (the product of the wave generator's rates)."""
        hop = 1
        for rate in self.wave.rates:
            hop *= rate
        return hop

    def receptive_field(self) -> int:
        """An upper bound, in tokens, on how far one semantic token moves the waveform either
        way (every layer of the decode path is a convolution or per-frame; 69 for the released
        config, whose measured reach is 66.8 tokens)."""
        p, w = self.prenet, self.wave
        reach = len(p.sample_ratios) * (3 + 2 * 3) + 3 + 3 * p.vocos_num_layers  # token rate
        reach += 3  # the generator's first conv(7), still at the token rate
        rate = 1
        for kernel, stride in zip(w.kernel_sizes, w.rates):
            reach += -(-kernel // stride) / rate  # transposed conv, in its input's samples
            rate *= stride
            reach += 3 * (1 + 3 + 9) / rate  # residual units: conv(7) at dilation 1, 3, 9
        reach += 3 / rate  # the last conv(7)
        return int(-(-reach // 1))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BiCodecConfig:
        root = data.get("audio_tokenizer", data)

        def section(name: str) -> dict[str, Any]:
            value = root.get(name)
            if not isinstance(value, dict):
                raise BiCodecConfigError(f"BiCodec config has no `{name}` section")
            return value

        def get(sec: dict[str, Any], where: str, key: str, default: Any = ...) -> Any:
            if key in sec:
                return sec[key]
            if default is ...:
                raise BiCodecConfigError(f"BiCodec config is missing `{where}.{key}`")
            return default

        q, s, p, d = (section(n) for n in ("quantizer", "speaker_encoder", "prenet", "decoder"))
        cfg = cls(
            quantizer=QuantizerConfig(
                input_dim=int(get(q, "quantizer", "input_dim")),
                codebook_size=int(get(q, "quantizer", "codebook_size")),
                codebook_dim=int(get(q, "quantizer", "codebook_dim"))),
            speaker=SpeakerConfig(
                out_dim=int(get(s, "speaker_encoder", "out_dim", 512)),
                latent_dim=int(get(s, "speaker_encoder", "latent_dim", 128)),
                token_num=int(get(s, "speaker_encoder", "token_num", 32)),
                fsq_levels=tuple(int(v) for v in get(s, "speaker_encoder", "fsq_levels", [4] * 6)),
                fsq_num_quantizers=int(get(s, "speaker_encoder", "fsq_num_quantizers", 1))),
            prenet=PrenetConfig(
                input_channels=int(get(p, "prenet", "input_channels")),
                vocos_dim=int(get(p, "prenet", "vocos_dim")),
                vocos_intermediate_dim=int(get(p, "prenet", "vocos_intermediate_dim")),
                vocos_num_layers=int(get(p, "prenet", "vocos_num_layers")),
                out_channels=int(get(p, "prenet", "out_channels")),
                condition_dim=int(get(p, "prenet", "condition_dim")),
                sample_ratios=tuple(int(v) for v in get(p, "prenet", "sample_ratios", [1, 1])),
                use_tanh_at_final=bool(get(p, "prenet", "use_tanh_at_final", False))),
            wave=WaveGeneratorConfig(
                input_channel=int(get(d, "decoder", "input_channel")),
                channels=int(get(d, "decoder", "channels")),
                rates=tuple(int(v) for v in get(d, "decoder", "rates")),
                kernel_sizes=tuple(int(v) for v in get(d, "decoder", "kernel_sizes"))),
            sample_rate=int(root.get("mel_params", {}).get("sample_rate", 16000)),
        )
        cfg.check()
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> BiCodecConfig:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text("utf-8"))
        except FileNotFoundError as exc:
            raise BiCodecConfigError(f"{path} does not exist") from exc
        if not isinstance(data, dict):
            raise BiCodecConfigError(f"{path} is not a YAML mapping")
        return cls.from_dict(data)

    def check(self) -> None:
        """Rejects shapes the decode path cannot wire together, naming the keys."""
        q, s, p, w = self.quantizer, self.speaker, self.prenet, self.wave
        problems = []
        if p.input_channels != q.input_dim:
            problems.append("prenet.input_channels must equal quantizer.input_dim")
        if p.condition_dim != s.out_dim:
            problems.append("prenet.condition_dim must equal speaker_encoder.out_dim")
        if p.out_channels != s.out_dim:
            problems.append("prenet.out_channels must equal speaker_encoder.out_dim "
                            "(the d-vector is added to the prenet output)")
        if w.input_channel != p.out_channels:
            problems.append("decoder.input_channel must equal prenet.out_channels")
        if any(r != 1 for r in p.sample_ratios):
            problems.append("prenet.sample_ratios other than 1 (resampling prenets) are not "
                            "supported by the streaming decoder")
        if s.fsq_num_quantizers != 1:
            problems.append("speaker_encoder.fsq_num_quantizers must be 1 (one code per global token)")
        if len(w.rates) != len(w.kernel_sizes):
            problems.append("decoder.rates and decoder.kernel_sizes differ in length")
        if w.channels % (2 ** len(w.rates)):
            problems.append("decoder.channels must be divisible by 2 ** len(decoder.rates)")
        if problems:
            raise BiCodecConfigError("unsupported BiCodec config: " + "; ".join(problems))
