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
        _built["tiny"] = folder
    return _built["tiny"]


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
