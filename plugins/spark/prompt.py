"""Per-voice prompt settings and the two-phase prompts built from them.

A voice's ``[synthesizers.spark]`` table (``speakers/voices/*.toml``) names its task token, the
control tokens of its style block and, optionally, 32 pinned global tokens::

    [synthesizers.spark]
    task = "controllable_tts"
    control = ["<|gender_0|>", "<|pitch_label_2|>", "<|speed_label_2|>"]
    global_tokens = [1203, 88, ...]   # optional: skips the first generation phase

Phase 1 (no pinned tokens, first chunk only) asks for the 32 global tokens::

    <task><|start_content|>TEXT<|end_content|>[<|start_style_label|>CONTROL<|end_style_label|>]
    <|start_global_token|>                      -> 32 x <|bicodec_global_N|>

Phase 2 continues the same sequence with the global tokens in place::

    ...<|start_global_token|>GLOBALS<|end_global_token|><|start_semantic_token|>
                                                -> <|bicodec_semantic_N|> ... <|end_semantic_token|>
"""

from __future__ import annotations

from typing import Any

import msgspec

from veena.plugins.spark.tokens import (END_CONTENT, END_GLOBAL, END_STYLE, GLOBAL_CODES,
                                        GLOBAL_TOKENS_PER_VOICE, START_CONTENT, START_GLOBAL,
                                        START_SEMANTIC, START_STYLE, TASKS, TokenMap,
                                        VocabularyError, strip_structure_tokens)


class VoiceSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A voice's ``[synthesizers.spark]`` table."""

    task: str = "controllable_tts"
    """A task name (``tts``, ``controllable_tts``, ``prompt_tts``) or a literal task token."""
    control: list[str] = []
    """Added tokens placed in the style block (gender, pitch, speed, emotion, speaker ...)."""
    global_tokens: list[int] | None = None
    """32 codes (0..4095) that fix the timbre; without them the model picks them per request."""

    @classmethod
    def parse(cls, table: dict[str, Any], voice: str) -> VoiceSettings:
        try:
            settings = msgspec.convert(table, cls)
        except msgspec.ValidationError as exc:
            raise VocabularyError(f"voice {voice!r}: synthesizers.spark: {exc}") from exc
        g = settings.global_tokens
        if g is not None and (len(g) != GLOBAL_TOKENS_PER_VOICE
                              or not all(0 <= v < GLOBAL_CODES for v in g)):
            raise VocabularyError(f"voice {voice!r}: global_tokens must be "
                                  f"{GLOBAL_TOKENS_PER_VOICE} integers in 0..{GLOBAL_CODES - 1}")
        return settings

    @property
    def task_token(self) -> str:
        return TASKS.get(self.task, self.task)


class PromptBuilder:
    """Token ids of the two phases' prompts for a tokenizer."""

    def __init__(self, tokenizer: Any, tokens: TokenMap) -> None:
        self.tokenizer = tokenizer
        self.tokens = tokens

    def check(self, settings: VoiceSettings, voice: str) -> None:
        """Every token the voice names exists in this checkpoint's vocabulary."""
        for token in (settings.task_token, *settings.control):
            if not self.tokens.has(token):
                raise VocabularyError(f"voice {voice!r}: the checkpoint's tokenizer has no "
                                      f"token {token!r}")

    def text_ids(self, text: str) -> list[int]:
        """The chunk's text as ids. Emotion tags and other text reach the model untouched;
        only prompt-structure tokens (``<|end_content|>``, speech tokens) are removed."""
        return list(self.tokenizer.encode(strip_structure_tokens(text), add_special_tokens=False))

    def global_phase(self, text: str, settings: VoiceSettings) -> list[int]:
        t = self.tokens
        ids = [t.id(settings.task_token), t.id(START_CONTENT), *self.text_ids(text), t.id(END_CONTENT)]
        if settings.control:
            ids += [t.id(START_STYLE), *(t.id(c) for c in settings.control), t.id(END_STYLE)]
        return ids + [t.id(START_GLOBAL)]

    def semantic_phase(self, text: str, settings: VoiceSettings, global_tokens: list[int]) -> list[int]:
        t = self.tokens
        return (self.global_phase(text, settings) + t.global_token_ids(global_tokens)
                + [t.id(END_GLOBAL), t.id(START_SEMANTIC)])
