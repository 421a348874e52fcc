"""The upstream BiCodec (PyPI ``spark-tts-lib``), used only as a test oracle.

The package is installed with ``--no-deps`` (see the Makefile): its declared dependencies pull
torchaudio (pinned to one torch build), soundfile, soxr, huggingface-hub and a CLI toolchain,
none of which the decode path uses, and its top-level ``__init__`` imports all of them. So this
helper imports the BiCodec modules directly, without running the package ``__init__``, and
replaces the torchaudio mel front end (training/encoding only) with a stand-in holding the same
buffers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import types

import pytest
import torch

ORACLE_VERSION = "0.2.1"


def upstream_bicodec_class():
    """``spark_tts_lib.models.bicodec.BiCodec`` and its component classes, or skip."""
    if "spark_tts_lib" not in sys.modules:  # set up once; the bare package has no spec
        spec = importlib.util.find_spec("spark_tts_lib")
        if spec is None or not spec.submodule_search_locations:
            message = (f"spark-tts-lib (test oracle) is not installed: "
                       f"pip install --no-deps spark-tts-lib=={ORACLE_VERSION} einx omegaconf")
            if os.environ.get("VEENA_REQUIRE_ORACLE"):
                pytest.fail(message)
            pytest.skip(message)
        pkg = types.ModuleType("spark_tts_lib")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["spark_tts_lib"] = pkg
    from spark_tts_lib.models import bicodec as upstream
    from spark_tts_lib.modules.encoder_decoder.feat_decoder import Decoder
    from spark_tts_lib.modules.encoder_decoder.feat_encoder import Encoder
    from spark_tts_lib.modules.encoder_decoder.wave_generator import WaveGenerator
    from spark_tts_lib.modules.speaker.speaker_encoder import SpeakerEncoder
    from spark_tts_lib.modules.vq.factorized_vector_quantize import FactorizedVectorQuantize

    class OracleBiCodec(upstream.BiCodec):
        def init_mel_transformer(self, config):
            # torchaudio's MelSpectrogram keeps these two buffers in the released state dict.
            mel = torch.nn.Module()
            mel.spectrogram = torch.nn.Module()
            mel.spectrogram.register_buffer("window", torch.hann_window(config["win_length"]))
            mel.mel_scale = torch.nn.Module()
            mel.mel_scale.register_buffer("fb", torch.zeros(config["n_fft"] // 2 + 1,
                                                            config["num_mels"]))
            self.mel_transformer = mel

        @classmethod
        def build(cls, config: dict, seed: int = 0) -> OracleBiCodec:
            """The full upstream model from a released config; initialisers are skipped (they
            dominate build time) and every tensor gets small random values instead."""
            c = config["audio_tokenizer"]
            with _no_init():
                model = cls(mel_params=c["mel_params"], encoder=Encoder(**c["encoder"]),
                            decoder=WaveGenerator(**c["decoder"]),
                            quantizer=FactorizedVectorQuantize(**c["quantizer"]),
                            speaker_encoder=SpeakerEncoder(**c["speaker_encoder"]),
                            prenet=Decoder(**c["prenet"]), postnet=Decoder(**c["postnet"]))
            gen = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                # Persistent tensors only: the FSQ code tables are derived buffers.
                for t in model.state_dict().values():
                    if t.is_floating_point():
                        t.copy_(torch.randn(t.shape, generator=gen) * 0.02)
            return model.eval()

    return OracleBiCodec


@contextlib.contextmanager
def _no_init():
    names = ("trunc_normal_", "normal_", "uniform_", "kaiming_uniform_", "kaiming_normal_",
             "xavier_uniform_", "xavier_normal_", "constant_", "ones_", "zeros_")
    saved = {n: getattr(torch.nn.init, n) for n in names}
    try:
        for n in names:
            setattr(torch.nn.init, n, lambda tensor, *a, **k: tensor)
        yield
    finally:
        for n, fn in saved.items():
            setattr(torch.nn.init, n, fn)


def released_key_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The upstream library's parametrized weight-norm keys renamed to the released file's
    ``weight_g``/``weight_v`` (the original Spark-TTS code used ``torch.nn.utils.weight_norm``)."""
    out = {}
    for key, tensor in state.items():
        key = key.replace(".parametrizations.weight.original0", ".weight_g")
        key = key.replace(".parametrizations.weight.original1", ".weight_v")
        out[key] = tensor.detach().contiguous()
    return out


def upstream_speaker_encoder_class():
    """``spark_tts_lib.modules.speaker.speaker_encoder.SpeakerEncoder``, or skip/fail as above."""
    upstream_bicodec_class()
    from spark_tts_lib.modules.speaker.speaker_encoder import SpeakerEncoder

    return SpeakerEncoder


def upstream_reference_prep():
    """Upstream's ``audio_volume_normalize`` and ``BiCodecTokenizer.get_ref_clip`` (pure numpy).

    Their modules import soundfile, soxr and torchaudio at the top (file reading, resampling,
    filters) which the oracle install leaves out; empty stand-ins are put in ``sys.modules``
    for the import only when the real ones are absent. Nothing here calls them.
    """
    upstream_bicodec_class()
    stubs = [n for n in ("soundfile", "soxr", "torchaudio") if importlib.util.find_spec(n) is None]
    for name in stubs:
        sys.modules[name] = types.ModuleType(name)
    try:
        from spark_tts_lib.utils.audio import audio_volume_normalize
    finally:
        for name in stubs:
            sys.modules.pop(name, None)
    # After the stand-ins are gone: transformers (imported here) probes for torchaudio itself.
    from spark_tts_lib.models.audio_tokenizer import BiCodecTokenizer
    return audio_volume_normalize, BiCodecTokenizer.get_ref_clip


def upstream_mel_transformer(mel_params: dict):
    """Upstream's own mel front end (``BiCodec.init_mel_transformer``: torchaudio's
    MelSpectrogram), or None where torchaudio is not installed (no build for every torch)."""
    if importlib.util.find_spec("torchaudio") is None:
        return None
    base = upstream_bicodec_class().__mro__[1]  # spark_tts_lib's BiCodec, not the oracle's
    holder = torch.nn.Module()
    base.init_mel_transformer(holder, mel_params)
    return holder.mel_transformer
