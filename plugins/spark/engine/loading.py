"""Loading the Hugging Face causal LM both torch engines run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose from {list(DTYPES)}")
    return DTYPES[name]


def load_causal_lm(llm_dir: Path, device: torch.device, dtype: torch.dtype,
                   threads: int | None) -> Any:
    """The model in ``llm_dir`` on ``device`` in ``dtype``, in eval mode without gradients."""
    from transformers import AutoModelForCausalLM

    if threads:
        torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(llm_dir, **_dtype_kwarg(dtype))
    return model.to(device).eval().requires_grad_(False)


def _dtype_kwarg(dtype: torch.dtype) -> dict[str, Any]:
    """``dtype=`` on transformers that know it (4.56+), ``torch_dtype=`` before."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}
