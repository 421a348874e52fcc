"""Random Veena3 checkpoints in the real on-disk layout, for tests and benchmarks.

``LLM/`` is a Hugging Face Qwen2 causal LM with a byte-level BPE tokenizer that carries every
Veena3 added token; ``BiCodec/`` holds a released-style ``config.yaml`` and ``model.safetensors``
whose key names, ``weight_g``/``weight_v`` pairs included, are those of the released file (the
decode path's tensors only: nothing downstream reads the encoder's). The weights are random, so
the speech is noise, but every loading and generation path runs for real.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import torch
import yaml

from veena.plugins.spark.bicodec.config import BiCodecConfig
from veena.plugins.spark.bicodec.model import BiCodecDecoder
from veena.plugins.spark.tokens import END_OF_TEXT, IM_END, all_added_tokens

SIZES = ("tiny", "full")
MARKER = "random_checkpoint.json"

_MEL = {"sample_rate": 16000, "n_fft": 1024, "win_length": 640, "hop_length": 320,
        "mel_fmin": 10, "mel_fmax": None, "num_mels": 128}

RELEASED_BICODEC = {
    "audio_tokenizer": {
        "mel_params": _MEL,
        "encoder": {"input_channels": 1024, "vocos_dim": 384, "vocos_intermediate_dim": 2048,
                    "vocos_num_layers": 12, "out_channels": 1024, "sample_ratios": [1, 1]},
        "decoder": {"input_channel": 1024, "channels": 1536, "rates": [8, 5, 4, 2],
                    "kernel_sizes": [16, 11, 8, 4]},
        "quantizer": {"input_dim": 1024, "codebook_size": 8192, "codebook_dim": 8,
                      "commitment": 0.25, "codebook_loss_weight": 2.0, "use_l2_normlize": True,
                      "threshold_ema_dead_code": 0.2},
        "speaker_encoder": {"input_dim": 128, "out_dim": 1024, "latent_dim": 128, "token_num": 32,
                            "fsq_levels": [4, 4, 4, 4, 4, 4], "fsq_num_quantizers": 1},
        "prenet": {"input_channels": 1024, "vocos_dim": 384, "vocos_intermediate_dim": 2048,
                   "vocos_num_layers": 12, "out_channels": 1024, "condition_dim": 1024,
                   "sample_ratios": [1, 1], "use_tanh_at_final": False},
        "postnet": {"input_channels": 1024, "vocos_dim": 384, "vocos_intermediate_dim": 2048,
                    "vocos_num_layers": 6, "out_channels": 1024, "use_tanh_at_final": False},
    },
    "highpass_cutoff_freq": 40, "sample_rate": 16000, "segment_duration": 2.4,
    "max_val_duration": 12, "latent_hop_length": 320, "ref_segment_duration": 6,
    "volume_normalize": True,
}
"""The released BiCodec ``config.yaml`` (Spark-TTS-0.5B)."""


def _tiny_bicodec() -> dict[str, Any]:
    cfg = copy.deepcopy(RELEASED_BICODEC)
    at = cfg["audio_tokenizer"]
    width = 32
    at["encoder"].update(input_channels=64, vocos_dim=32, vocos_intermediate_dim=64,
                         vocos_num_layers=2, out_channels=width)
    at["decoder"].update(input_channel=width, channels=64)
    at["quantizer"].update(input_dim=width)
    at["speaker_encoder"].update(out_dim=width, latent_dim=16)
    at["prenet"].update(input_channels=width, vocos_dim=32, vocos_intermediate_dim=64,
                        vocos_num_layers=2, out_channels=width, condition_dim=width)
    at["postnet"].update(input_channels=width, vocos_dim=32, vocos_intermediate_dim=64,
                         vocos_num_layers=1, out_channels=width)
    return cfg


LLM_SHAPES = {
    # A few-layer Qwen2 whose vocabulary is just what the tokenizer holds.
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "intermediate_size": 128, "max_position_embeddings": 8192},
    # Qwen2.5-0.5B with Veena3's 166000-token vocabulary.
    "full": {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
             "num_key_value_heads": 2, "intermediate_size": 4864, "max_position_embeddings": 32768,
             "vocab_size": 166000},
}

_CORPUS = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Welcome to Veena. Numbers like 42, 3.14 and 2026 are read aloud.",
    "नमस्ते! आप कैसे हैं? आज मौसम बहुत अच्छा है।",
    "నమస్కారం, మీరు ఎలా ఉన్నారు? ఈ రోజు వాతావరణం బాగుంది.",
    "வணக்கம், நீங்கள் எப்படி இருக்கிறீர்கள்?",
    "ನಮಸ್ಕಾರ, ನೀವು ಹೇಗಿದ್ದೀರಿ?  നമസ്കാരം, സുഖമാണോ?  নমস্কার, আপনি কেমন আছেন?",
]


def bicodec_config(size: str) -> dict[str, Any]:
    """The ``config.yaml`` contents for a checkpoint size."""
    _check_size(size)
    return copy.deepcopy(RELEASED_BICODEC) if size == "full" else _tiny_bicodec()


def random_bicodec_state(config: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random decode-path weights with the released key names.

    Initialised to keep activations at a healthy level (fan-in scaled), so the random waveform is
    audible noise rather than silence; weight-normalised layers are stored as ``weight_g`` /
    ``weight_v`` with ``v`` deliberately not unit-norm, as in a trained file.
    """
    from torch import nn

    from veena.plugins.spark.bicodec.modules import AdaLayerNorm, ConvNeXtBlock, ResidualUnit, Snake

    cfg = BiCodecConfig.from_dict(config)
    gen = torch.Generator().manual_seed(seed)
    model = BiCodecDecoder(cfg)

    def normal(t: torch.Tensor, std: float) -> None:
        t.copy_(torch.randn(t.shape, generator=gen) * std)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv1d):
                normal(m.weight, 1 / math.sqrt(m.in_channels // m.groups * m.kernel_size[0]))
            elif isinstance(m, nn.ConvTranspose1d):
                normal(m.weight, 1 / math.sqrt(m.in_channels * m.kernel_size[0] / m.stride[0]))
            elif isinstance(m, nn.Linear):
                normal(m.weight, 1 / math.sqrt(m.in_features))
            elif isinstance(m, nn.Embedding):
                normal(m.weight, 1.0)
            elif isinstance(m, Snake):
                m.alpha.copy_(1.0 + 0.25 * torch.rand(m.alpha.shape, generator=gen))
            elif isinstance(m, ConvNeXtBlock):
                m.gamma.fill_(1.0 / cfg.prenet.vocos_num_layers)
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
        for m in model.modules():
            if isinstance(m, AdaLayerNorm):  # scale ≈ 1 and shift ≈ 0, weakly voice-dependent
                normal(m.scale.weight, 0.02)
                m.scale.bias.fill_(1.0)
                normal(m.shift.weight, 0.02)
            elif isinstance(m, ResidualUnit):  # keep the residual stack from blowing up
                m.block[3].weight.mul_(0.3)
        # Scale the last convolution so the waveform sits well inside tanh's linear range.
        head, last = model.decoder.model[:-1], model.decoder.model[-2]
        probe_sem = torch.randint(0, cfg.quantizer.codebook_size, (1, 24), generator=gen)
        probe_glb = torch.randint(0, cfg.speaker.codebook_size, (1, cfg.speaker.token_num),
                                  generator=gen)
        d = model.speaker_embedding(probe_glb)
        pre = head(model.prenet(model.quantizer(probe_sem), d) + d.unsqueeze(-1))
        last.weight.mul_(0.25 / float(pre.std()))
        last.bias.zero_()
    state: dict[str, torch.Tensor] = {}
    weight_normed = [n for n, m in model.named_modules()
                     if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d))
                     and (n.startswith("decoder.") or n == "quantizer.out_project")]
    for key, tensor in model.state_dict().items():
        base = key[: -len(".weight")] if key.endswith(".weight") else None
        if base in weight_normed:
            w = tensor.float()
            norm = w.reshape(w.shape[0], -1).norm(dim=1).reshape(-1, *([1] * (w.dim() - 1)))
            k = 0.5 + torch.rand(norm.shape, generator=gen)
            state[f"{base}.weight_g"] = norm.clone()
            state[f"{base}.weight_v"] = (w * k).contiguous()
        else:
            state[key] = tensor.contiguous().clone()
    return state


def build_tokenizer(size: str):
    """A byte-level BPE tokenizer trained on a few sentences, plus every Veena3 added token."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600 if size == "tiny" else 2000, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[END_OF_TEXT, "<|im_start|>", IM_END])
    tok.train_from_iterator(_CORPUS, trainer)
    # Speech and control tokens are ordinary added tokens (matched whole, never split, kept by
    # skip_special_tokens) as in the released Spark tokenizer.
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in all_added_tokens()])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=IM_END, pad_token=END_OF_TEXT)


def write_random_checkpoint(folder: str | Path, size: str = "tiny", seed: int = 0,
                            device: str | None = None) -> Path:
    """Writes ``folder/LLM`` and ``folder/BiCodec`` with random weights; returns ``folder``."""
    from safetensors.torch import save_file
    from transformers import Qwen2Config, Qwen2ForCausalLM

    _check_size(size)
    folder = Path(folder)
    llm_dir, codec_dir = folder / "LLM", folder / "BiCodec"
    llm_dir.mkdir(parents=True, exist_ok=True)
    codec_dir.mkdir(parents=True, exist_ok=True)

    cfg = bicodec_config(size)
    (codec_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), "utf-8")
    from veena.plugins.spark.bicodec.speaker import random_speaker_state

    # Decoder and speaker encoder in one file, as released (the voices plugin clones with it).
    save_file({**random_bicodec_state(cfg, seed), **random_speaker_state(cfg, seed)},
              str(codec_dir / "model.safetensors"), metadata={"format": "pt"})

    tokenizer = build_tokenizer(size)
    tokenizer.save_pretrained(llm_dir)
    shape = dict(LLM_SHAPES[size])
    vocab = shape.pop("vocab_size", None) or _round_up(len(tokenizer), 64)
    config = Qwen2Config(
        vocab_size=vocab, rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
        use_sliding_window=False, bos_token_id=tokenizer.convert_tokens_to_ids(END_OF_TEXT),
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END), **shape)
    torch.manual_seed(seed)
    dtype = torch.bfloat16 if size == "full" else torch.float32
    with torch.device(device or "cpu"):
        model = Qwen2ForCausalLM(config)
    model.to(dtype).save_pretrained(llm_dir, safe_serialization=True)
    (folder / MARKER).write_text(json.dumps({"size": size, "seed": seed, "random": True}) + "\n")
    return folder


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _check_size(size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"unknown checkpoint size {size!r}; choose from {list(SIZES)}")
