"""The Spark/Veena3 token vocabulary: names of the added tokens and the id ↔ value maps.

The LLM writes speech as added tokens, ``<|bicodec_global_N|>`` (N < 4096, 32 of them: the
voice) then ``<|bicodec_semantic_N|>`` (N < 8192, 50 a second: what is said), framed by task and
structure tokens. Nothing here decodes text: generated ids are mapped to values through tables
built once from the tokenizer's vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
import numpy as np

GLOBAL_CODES = 4096
SEMANTIC_CODES = 8192
GLOBAL_TOKENS_PER_VOICE = 32


def global_token(value: int) -> str:
    return f"<|bicodec_global_{value}|>"


def semantic_token(value: int) -> str:
    return f"<|bicodec_semantic_{value}|>"


TASKS = {
    "tts": "<|task_tts|>",
    "controllable_tts": "<|task_controllable_tts|>",
    "prompt_tts": "<|task_prompt_tts|>",
}

START_CONTENT, END_CONTENT = "<|start_content|>", "<|end_content|>"
START_GLOBAL, END_GLOBAL = "<|start_global_token|>", "<|end_global_token|>"
START_SEMANTIC, END_SEMANTIC = "<|start_semantic_token|>", "<|end_semantic_token|>"
START_STYLE, END_STYLE = "<|start_style_label|>", "<|end_style_label|>"
IM_END, END_OF_TEXT = "<|im_end|>", "<|endoftext|>"

STRUCTURE = (START_CONTENT, END_CONTENT, START_GLOBAL, END_GLOBAL, START_SEMANTIC, END_SEMANTIC,
             START_STYLE, END_STYLE)

CONTROL = (
    [f"<|gender_{i}|>" for i in range(2)]
    + [f"<|age_{i}|>" for i in range(5)]
    + [f"<|{kind}_label_{i}|>" for kind in ("pitch", "pitch_var", "loudness", "speed") for i in range(5)]
    + [f"<|emotion_{i}|>" for i in range(25)]
)
"""Style/control tokens of the controllable task (gender, age, 5-level labels, emotion)."""

# Structure tokens a request's text must not smuggle into the prompt. Emotion tags and anything
# else pass through to the model untouched.
_RESERVED_IN_TEXT = re.compile(
    r"<\|(?:bicodec_(?:global|semantic)_\d+|task_[a-z_]+|start_[a-z_]+|end_[a-z_]+|im_end|im_start"
    r"|endoftext)\|>")


def strip_structure_tokens(text: str) -> str:
    """Removes prompt-structure tokens (``<|end_content|>``, ``<|bicodec_*|>``...) from user text."""
    return _RESERVED_IN_TEXT.sub("", text)


def all_added_tokens() -> list[str]:
    """Every added token a Veena3 tokenizer carries, in the order a random checkpoint adds them."""
    return (list(TASKS.values()) + list(STRUCTURE) + CONTROL
            + [global_token(i) for i in range(GLOBAL_CODES)]
            + [semantic_token(i) for i in range(SEMANTIC_CODES)])


class VocabularyError(ValueError):
    """The tokenizer lacks tokens the voice needs."""


class TokenMap:
    """Ids of the speech and structure tokens in one tokenizer, and the reverse maps."""

    def __init__(self, vocab: Mapping[str, int], eos_id: int | None = None) -> None:
        missing = [t for t in STRUCTURE if t not in vocab]
        g = [vocab.get(global_token(i)) for i in range(GLOBAL_CODES)]
        s = [vocab.get(semantic_token(i)) for i in range(SEMANTIC_CODES)]
        missing += [global_token(i) for i, v in enumerate(g) if v is None][:3]
        missing += [semantic_token(i) for i, v in enumerate(s) if v is None][:3]
        if missing:
            raise VocabularyError(f"the tokenizer lacks Veena3 speech tokens, e.g. {missing[:6]}")
        self._vocab = dict(vocab)
        self.structure = {t: vocab[t] for t in STRUCTURE}
        self.global_ids = np.asarray(g, dtype=np.int64)
        """``global_ids[v]`` is the id of ``<|bicodec_global_v|>``."""
        self.semantic_ids = np.asarray(s, dtype=np.int64)
        stops = [vocab[END_SEMANTIC]]
        for extra in (vocab.get(IM_END), eos_id):
            if extra is not None and extra not in stops:
                stops.append(extra)
        self.stop_ids: tuple[int, ...] = tuple(stops)
        """Ids that end the semantic phase: ``<|end_semantic_token|>``, ``<|im_end|>``, EOS."""
        self._global_value = {tid: i for i, tid in enumerate(g)}
        self._semantic_value = {tid: i for i, tid in enumerate(s)}

    def id(self, token: str) -> int:
        """The id of an added token; VocabularyError naming it when the tokenizer lacks it."""
        try:
            return self._vocab[token]
        except KeyError:
            raise VocabularyError(f"the tokenizer has no token {token!r}") from None

    def has(self, token: str) -> bool:
        return token in self._vocab

    def global_value(self, token_id: int) -> int | None:
        """The code of a ``<|bicodec_global_N|>`` id, else None."""
        return self._global_value.get(token_id)

    def semantic_value(self, token_id: int) -> int | None:
        """The code of a ``<|bicodec_semantic_N|>`` id, else None."""
        return self._semantic_value.get(token_id)

    def parse_semantic(self, ids: Iterable[int]) -> tuple[list[int], bool]:
        """(semantic values up to the first stop token, whether one was reached); ids that are
        not semantic tokens are skipped."""
        out: list[int] = []
        for tid in ids:
            if tid in self.stop_ids:
                return out, True
            value = self._semantic_value.get(tid)
            if value is not None:
                out.append(value)
        return out, False

    def parse_global(self, ids: Iterable[int]) -> list[int]:
        """The global codes among ``ids``, in order."""
        return [v for v in (self._global_value.get(t) for t in ids) if v is not None]

    def global_token_ids(self, values: Iterable[int]) -> list[int]:
        return [int(self.global_ids[v]) for v in values]
