"""BiCodec decoder: bit-compatible with the upstream implementation on the released config,
loads the released key names, ignores encoder keys and fails loudly on missing ones."""

from __future__ import annotations

import warnings

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from tests.support.torch_threads import one_torch_thread  # noqa: F401 (autouse fixture)
from tests.support.spark_oracle import (released_key_names, upstream_bicodec_class,
                                        upstream_mel_transformer, upstream_reference_prep,
                                        upstream_speaker_encoder_class)
from veena.plugins.spark.bicodec import (BiCodecConfig, BiCodecConfigError, BiCodecDecoder,
                                         MissingWeightsError, fold_weight_norm)
from veena.plugins.spark.bicodec.speaker import (BiCodecSpeakerEncoder, SpeakerEncoderConfig,
                                                 random_speaker_state, reference_clip,
                                                 volume_normalize)
from veena.plugins.spark.checkpoint import bicodec_config, random_bicodec_state


def test_same_waveform_as_upstream_on_the_released_config(tmp_path):
    """Upstream BiCodec built from the released config.yaml; a model.safetensors in the released
    format (every upstream key, the decode path's weight-normed layers as weight_g/weight_v with
    g != |v|, Snake alphas != 1) is loaded by upstream's own load_state_dict and by our loader:
    the same waveform in fp32, within 1e-4."""
    oracle_cls = upstream_bicodec_class()
    config = bicodec_config("full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oracle = oracle_cls.build(config, seed=0)
    file_state = released_key_names(oracle.state_dict())
    decode_path = random_bicodec_state(config, seed=1)
    assert set(decode_path) <= set(file_state), set(decode_path) - set(file_state)
    file_state.update(decode_path)
    assert any(k.startswith("encoder.") for k in file_state)
    folder = tmp_path / "BiCodec"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    save_file(file_state, str(folder / "model.safetensors"))

    missing, unexpected = oracle.load_state_dict(load_file(str(folder / "model.safetensors")),
                                                 strict=False)
    assert not missing and not unexpected  # upstream reads the released names itself
    ours = BiCodecDecoder.from_pretrained(folder)
    gen = torch.Generator().manual_seed(2)
    semantic = torch.randint(0, 8192, (2, 9), generator=gen)
    globals_ = torch.randint(0, 4096, (2, 32), generator=gen)
    with torch.inference_mode():
        expected = oracle.detokenize(semantic, globals_.unsqueeze(1)).squeeze(1)
        got = ours(semantic, globals_)
    assert got.shape == expected.shape == (2, 9 * 320)
    assert 0.05 < expected.std() < 0.6  # a real signal, neither silent nor saturated
    assert (got - expected).abs().max().item() < 1e-4


@pytest.fixture(scope="module")
def tiny_state():
    config = bicodec_config("tiny")
    return config, random_bicodec_state(config, seed=3)


def test_random_checkpoint_uses_released_key_names(tiny_state):
    _, state = tiny_state
    assert "decoder.model.0.weight_g" in state and "decoder.model.0.weight_v" in state
    assert "decoder.model.0.weight" not in state
    assert "quantizer.out_project.weight_g" in state
    assert "prenet.vocos_backbone.convnext.0.norm.scale.weight" in state
    assert state["quantizer.codebook.weight"].shape == (8192, 8)


def test_encoder_keys_ignored_and_parametrized_names_accepted(tiny_state):
    config, state = tiny_state
    cfg = BiCodecConfig.from_dict(config)
    a = BiCodecDecoder(cfg)
    a.load_released_state({**state, "encoder.embed.weight": torch.zeros(3),
                           "postnet.linear.bias": torch.zeros(2), "quantizer.cluster_size": torch.zeros(1)})
    renamed = {k.replace(".weight_g", ".parametrizations.weight.original0")
                .replace(".weight_v", ".parametrizations.weight.original1"): v for k, v in state.items()}
    b = BiCodecDecoder(cfg)
    b.load_released_state(renamed)
    s, g = torch.randint(0, 8192, (1, 7)), torch.randint(0, 4096, (1, 32))
    with torch.inference_mode():
        assert torch.equal(a(s, g), b(s, g))


def test_missing_or_misshapen_key_fails_loudly(tiny_state):
    config, state = tiny_state
    cfg = BiCodecConfig.from_dict(config)
    broken = {k: v for k, v in state.items() if not k.startswith("decoder.model.2.block.1.")}
    broken["prenet.linear.bias"] = torch.zeros(5)
    with pytest.raises(MissingWeightsError) as err:
        BiCodecDecoder(cfg).load_released_state(broken)
    assert "decoder.model.2.block.1.weight" in str(err.value)
    assert "prenet.linear.bias (5,)" in str(err.value)


def test_weight_norm_fold_matches_torch():
    conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.ConvTranspose1d(6, 4, 5))
    with torch.no_grad():
        conv.parametrizations.weight.original0.mul_(1.7)
    g, v = conv.parametrizations.weight.original0, conv.parametrizations.weight.original1
    assert torch.allclose(fold_weight_norm(g, v), conv.weight, atol=1e-7)


def test_config_errors_name_the_key():
    config = bicodec_config("tiny")
    del config["audio_tokenizer"]["decoder"]["channels"]
    with pytest.raises(BiCodecConfigError, match="decoder.channels"):
        BiCodecConfig.from_dict(config)
    config = bicodec_config("tiny")
    config["audio_tokenizer"]["prenet"]["sample_ratios"] = [2, 1]
    with pytest.raises(BiCodecConfigError, match="sample_ratios"):
        BiCodecConfig.from_dict(config)


def test_receptive_field_bound():
    """The released config's bound is 69 tokens (measured reach 66.8, ARCHITECTURE §5); on a
    real decoder a changed token never moves samples beyond the bound."""
    assert BiCodecConfig.from_dict(bicodec_config("full")).receptive_field() == 69
    config = bicodec_config("tiny")
    cfg = BiCodecConfig.from_dict(config)
    bound = cfg.receptive_field()
    model = BiCodecDecoder(cfg)
    model.load_released_state(random_bicodec_state(config, seed=0))
    s, g = torch.randint(0, 8192, (1, 120)), torch.randint(0, 4096, (1, 32))
    s2 = s.clone()
    s2[0, 60] = (s[0, 60] + 1) % 8192
    with torch.inference_mode():
        diff = (model(s2, g) - model(s, g)).abs()[0]
    changed = torch.nonzero(diff > 0).squeeze(-1)
    assert len(changed)
    assert changed.min().item() >= (60 - bound) * 320
    assert changed.max().item() < (61 + bound) * 320


def _voice_like(seconds: float, f0: float, seed: int, rate: int = 16000):
    """A harmonic tone with vibrato, a syllable-rate envelope and breath noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.7 * t) ** 2
    return (0.15 * wave * envelope + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


def test_same_global_tokens_as_upstream_on_the_released_config(tmp_path):
    """Upstream's SpeakerEncoder (released config) loads the speaker_encoder.* tensors of a
    released-format file with strict=True; ours loads the same file. For clips prepared by
    upstream's own volume normalisation and reference-clip code, upstream's tokenize and ours
    give the same 32 tokens. Where torchaudio is installed upstream's mel is its own
    (torchaudio's MelSpectrogram); where it is not (no build for every torch, e.g. the pinned
    2.14.1), both sides get the mel from our MelSpectrogram."""
    import numpy as np

    upstream_cls = upstream_speaker_encoder_class()
    up_normalize, up_ref_clip = upstream_reference_prep()
    config = bicodec_config("full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        upstream = upstream_cls(**config["audio_tokenizer"]["speaker_encoder"]).eval()
    ours_state = random_speaker_state(config, seed=4)
    up_state = {f"speaker_encoder.{k}": v for k, v in upstream.state_dict().items()}
    ours_keys = {k for k in ours_state if k.startswith("speaker_encoder.")}
    assert ours_keys <= set(up_state), sorted(ours_keys - set(up_state))[:5]
    file_state = {**released_key_names(up_state), **ours_state,
                  **random_bicodec_state(config, seed=1)}
    folder = tmp_path / "BiCodec"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    save_file(file_state, str(folder / "model.safetensors"))
    loaded = load_file(str(folder / "model.safetensors"))
    upstream.load_state_dict({k[len("speaker_encoder."):]: v for k, v in loaded.items()
                              if k.startswith("speaker_encoder.")}, strict=True)
    ours = BiCodecSpeakerEncoder.from_pretrained(folder)
    assert ours.config.ref_samples == 96000

    ref_config = {"sample_rate": 16000, "ref_segment_duration": config["ref_segment_duration"],
                  "latent_hop_length": config["latent_hop_length"]}
    clips = [_voice_like(8.0, 110, 0), _voice_like(3.0, 210, 1), 0.02 * _voice_like(7.0, 160, 2)]
    refs = []
    for clip in clips:
        expected = up_ref_clip(types_ns(config=ref_config), up_normalize(clip.astype(np.float64)))
        got = reference_clip(volume_normalize(clip.astype(np.float64)), ours.config.ref_samples)
        assert got.shape == expected.shape == (96000,)
        assert np.array_equal(got, expected)
        refs.append(torch.from_numpy(got).float())
    wav = torch.stack(refs)
    upstream_mel = upstream_mel_transformer(config["audio_tokenizer"]["mel_params"])
    with torch.inference_mode():
        mel = ours.mel_spectrogram(wav)
        if upstream_mel is not None:  # as BiCodec.tokenize: mel_transformer(ref_wav).squeeze(1)
            up_mel = upstream_mel(wav.unsqueeze(1)).squeeze(1)
            assert (up_mel - mel).abs().max().item() < 1e-3 * mel.abs().max().item()
            mel = up_mel
        expected = upstream.tokenize(mel.transpose(1, 2)).squeeze(1)
        got = ours(wav)
        one_by_one = torch.cat([ours(w.unsqueeze(0)) for w in wav])
        up_latent = upstream.perceiver_sampler(
            upstream.speaker_encoder(mel.transpose(1, 2), True)[1].transpose(1, 2))
        our_latent = ours.speaker_encoder.perceiver_sampler(
            ours.speaker_encoder.speaker_encoder(mel).transpose(1, 2))
    assert mel.shape == (3, 128, 301)
    assert expected.shape == got.shape == (3, 32)
    assert torch.equal(got, expected)
    assert torch.equal(one_by_one, expected)
    assert (our_latent - up_latent).abs().max().item() < 1e-4
    assert all(len(set(row.tolist())) > 8 for row in got)  # not one repeated code
    assert not torch.equal(got[0], got[1])


def types_ns(**kwargs):
    import types

    return types.SimpleNamespace(**kwargs)


def test_speaker_encoder_errors_name_keys_and_reject_a_foreign_mel_front_end():
    config = bicodec_config("tiny")
    state = random_speaker_state(config, seed=0)
    cfg = SpeakerEncoderConfig.from_dict(config)
    broken = {k: v for k, v in state.items() if "layer3" not in k}
    broken["speaker_encoder.quantizer.project_in.bias"] = torch.zeros(5)
    with pytest.raises(MissingWeightsError) as err:
        BiCodecSpeakerEncoder(cfg).load_released_state(broken)
    assert "speaker_encoder.speaker_encoder.layer3.se_res2block.0.conv.weight" in str(err.value)
    assert "project_in.bias (5,)" in str(err.value)
    htk = dict(state)
    htk["mel_transformer.mel_scale.fb"] = state["mel_transformer.mel_scale.fb"] * 1.01
    with pytest.raises(MissingWeightsError, match="mel filterbank"):
        BiCodecSpeakerEncoder(cfg).load_released_state(htk)
    bad = bicodec_config("tiny")
    bad["audio_tokenizer"]["speaker_encoder"]["input_dim"] = 80
    with pytest.raises(BiCodecConfigError, match="input_dim"):
        SpeakerEncoderConfig.from_dict(bad)
