"""Per-voice prompt settings and the two-phase prompts built from them.

A voice's ``[synthesizers.spark]`` table (``speakers/voices/*.toml``) names its task token, the
control tokens of its style block and, optionally, 32 pinned global tokens::

    [synthesizers.spark]
    task = "controllable_tts"
    control = ["<|gender_0|>", "<|pitch_label_2|>", "<|speed_label_2|>"]
    global_tokens = [1203, 88, ...]   # optional: skips the first generation phase
    speed_levels = [0.62, 0.8, 1.0, 1.19, 1.41]   # optional: rate of speed labels 0-4

Phase 1 (no pinned tokens, first chunk only) asks for the 32 global tokens::

    <task><|start_content|>TEXT<|end_content|>[<|start_style_label|>CONTROL<|end_style_label|>]
    <|start_global_token|>                      -> 32 x <|bicodec_global_N|>

Phase 2 continues the same sequence with the global tokens in place::

    ...<|start_global_token|>GLOBALS<|end_global_token|><|start_semantic_token|>
                                                -> <|bicodec_semantic_N|> ... <|end_semantic_token|>
"""

from __future__ import annotations

from typing import Any

import math
import re

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
    speed_levels: list[float] | None = None
    """The speaking rate each ``<|speed_label_0..4|>`` gives this voice, relative to its own
    label's (which reads 1.0), as measured on the checkpoint (``bench_spark_speed.py`` prints
    them). With them and a speed label in ``control``, a request's ``speed`` picks the nearest
    label; without them the model's rate is not assumed and the pipeline time-stretches."""

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
        levels = settings.speed_levels
        if levels is not None and (len(levels) != SPEED_LABELS or not all(v > 0 for v in levels)
                                   or settings.speed_label is None):
            raise VocabularyError(f"voice {voice!r}: speed_levels must be {SPEED_LABELS} positive "
                                  "rates, and control must hold a <|speed_label_N|> token")
        return settings

    @property
    def task_token(self) -> str:
        return TASKS.get(self.task, self.task)

    @property
    def speed_label(self) -> int | None:
        """The level of the ``<|speed_label_N|>`` token in ``control``, if there is one."""
        found = next((m for c in self.control if (m := _SPEED_LABEL.fullmatch(c))), None)
        return int(found.group(1)) if found else None

    def at_speed(self, speed: float) -> tuple[VoiceSettings, float]:
        """These settings with the speed label nearest ``speed`` (on a log scale), and the rate
        that label gives; unchanged and 1.0 where the voice has no measured ``speed_levels``."""
        own, levels = self.speed_label, self.speed_levels
        if own is None or levels is None or speed == 1.0:
            return self, 1.0
        rates = [v / levels[own] for v in levels]
        label = min(range(SPEED_LABELS), key=lambda i: abs(math.log(rates[i] / speed)))
        control = [f"<|speed_label_{label}|>" if _SPEED_LABEL.fullmatch(c) else c
                   for c in self.control]
        return msgspec.structs.replace(self, control=control), rates[label]


SPEED_LABELS = 5
"""Veena3's speaking-rate labels, ``<|speed_label_0|>`` (slowest) to ``<|speed_label_4|>``."""
_SPEED_LABEL = re.compile(r"<\|speed_label_(\d)\|>")


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
