"""BiCodec decoder: bit-compatible with the upstream implementation on the released config,
loads the released key names, ignores encoder keys and fails loudly on missing ones."""

from __future__ import annotations

import warnings

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from tests.support.torch_threads import one_torch_thread  # noqa: F401 (autouse fixture)
from tests.support.spark_oracle import released_key_names, upstream_bicodec_class
from veena.plugins.spark.bicodec import (BiCodecConfig, BiCodecConfigError, BiCodecDecoder,
                                         MissingWeightsError, fold_weight_norm)
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
