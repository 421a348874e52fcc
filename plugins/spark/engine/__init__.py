"""LLM engines behind one interface (``base.Engine``): ``torch`` (batched; runs anywhere),
``hf`` (plain Hugging Face decoding: the baseline and test reference) and ``vllm``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from veena.plugins.spark.engine.base import (Engine, FinishReason, SamplingParams, TokenRequest,
                                             TokenSet, TokenStream)

ENGINES = ("torch", "hf", "vllm")


def create_engine(kind: str, llm_dir: Path, **options: Any) -> Engine:
    """The engine called ``kind`` for the Hugging Face model in ``llm_dir`` (nothing loaded yet)."""
    if kind == "torch":
        from veena.plugins.spark.engine.torch_engine import TorchEngine
        return TorchEngine(llm_dir, **options)
    if kind == "hf":
        from veena.plugins.spark.engine.hf_engine import HfEngine
        return HfEngine(llm_dir, **options)
    if kind == "vllm":
        from veena.plugins.spark.engine.vllm_engine import VllmEngine
        return VllmEngine(llm_dir, **options)
    raise ValueError(f"unknown engine {kind!r}; choose from {list(ENGINES)}")


__all__ = ["ENGINES", "Engine", "FinishReason", "SamplingParams", "TokenRequest", "TokenSet",
           "TokenStream", "create_engine"]
