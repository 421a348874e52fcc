"""One tiny random Veena3 checkpoint per test session, in the real on-disk format."""

from __future__ import annotations

from pathlib import Path

import pytest

_built: dict[str, Path] = {}


def tiny_checkpoint(factory: pytest.TempPathFactory) -> Path:
    """Builds (once per session) and returns a tiny random checkpoint folder."""
    if "tiny" not in _built:
        pytest.importorskip("transformers")
        from veena.plugins.spark.checkpoint import write_random_checkpoint

        folder = write_random_checkpoint(factory.mktemp("veena3-tiny"), "tiny", seed=0)
        add_speaker_encoder(folder / "BiCodec", seed=0)
        _built["tiny"] = folder
    return _built["tiny"]


def add_speaker_encoder(codec_dir: Path, seed: int = 0) -> None:
    """Adds random speaker-encoder weights (released key names, mel buffers included) to a
    ``BiCodec/model.safetensors`` that holds only the decode path, as the released file does."""
    import yaml
    from safetensors.torch import load_file, save_file

    from veena.plugins.spark.bicodec.speaker import random_speaker_state

    weights = codec_dir / "model.safetensors"
    state = load_file(str(weights))
    config = yaml.safe_load((codec_dir / "config.yaml").read_text("utf-8"))
    extra = random_speaker_state(config, seed)
    assert not set(extra) & set(state), "speaker-encoder keys already present"
    save_file({**state, **extra}, str(weights), metadata={"format": "pt"})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """The session's tiny random checkpoint."""
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def tokenizer(ckpt):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ckpt / "LLM")


@pytest.fixture(scope="module")
def tokens(tokenizer):
    from veena.plugins.spark.tokens import TokenMap

    return TokenMap(tokenizer.get_vocab(), tokenizer.eos_token_id)
