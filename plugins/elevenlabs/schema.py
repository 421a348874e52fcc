"""ElevenLabs' text-to-speech request body and ``output_format`` names, mapped onto a
``GenerateRequest`` (field names as in ElevenLabs' API reference and Python SDK)."""

from __future__ import annotations

from typing import Any

import msgspec

from veena.platform.errors import invalid_choice
from veena.platform.schemas import GenerateRequest, Pronunciation

DEFAULT_OUTPUT_FORMAT = "mp3_44100_128"
"""ElevenLabs' default when a request names no ``output_format``."""
OUTPUT_FORMATS: tuple[str, ...] = (
    "mp3_22050_32", "mp3_44100_32", "mp3_44100_64", "mp3_44100_96", "mp3_44100_128",
    "mp3_44100_192", "pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100",
    "pcm_48000", "ulaw_8000", "alaw_8000", "opus_48000_32", "opus_48000_64", "opus_48000_96",
    "opus_48000_128", "opus_48000_192")
"""ElevenLabs' ``codec_rate[_kbps]`` names this server can send; the pipeline's format parser
(``veena.codecs.formats``) turns each into codec, sample rate and bitrate."""
NORMALIZATION: dict[str, bool | None] = {"auto": None, "on": True, "off": False}
"""``apply_text_normalization`` -> ``normalize`` (``auto``: the server's configured default)."""
PARAMS = {"text": "text", "speaker": "voice_id", "format": "output_format",
          "speed": "voice_settings.speed", "language": "language_code", "seed": "seed",
          "normalize": "apply_text_normalization"}
"""Veena field names -> the ElevenLabs request's, for the ``param`` of an error."""


class VoiceSettings(msgspec.Struct, kw_only=True):
    """ElevenLabs' ``voice_settings``; only ``speed`` changes the audio here."""

    stability: float | None = None
    similarity_boost: float | None = None
    style: float | None = None
    use_speaker_boost: bool | None = None
    speed: float | None = None


class TextToSpeechBody(msgspec.Struct, kw_only=True):
    """``POST /v1/text-to-speech/{voice_id}[/stream]``. Unknown fields are ignored (SDKs add
    some); ``model_id`` is accepted and unused (the configured synthesizer speaks);
    ``previous_text``/``next_text`` and the request-id/dictionary fields are accepted and unused."""

    text: str
    model_id: str | None = None
    language_code: str | None = None
    voice_settings: VoiceSettings | None = None
    pronunciation_dictionary_locators: list[Any] | None = None
    seed: int | None = None
    previous_text: str | None = None
    next_text: str | None = None
    previous_request_ids: list[str] | None = None
    next_request_ids: list[str] | None = None
    apply_text_normalization: str | None = None
    apply_language_text_normalization: bool | None = None
    use_pvc_as_ivc: bool | None = None
    pronunciations: list[Pronunciation] | None = None
    """Veena's own per-request lexicon (ElevenLabs' dictionary locators name stored
    dictionaries, which this server does not have)."""

    def to_generate(self, voice_id: str, output_format: str | None, *,
                    stream: bool) -> GenerateRequest:
        """The equivalent generate request; 400 for an ``output_format`` or
        ``apply_text_normalization`` outside ElevenLabs' names."""
        fmt = (output_format or DEFAULT_OUTPUT_FORMAT).strip().lower()
        if fmt not in OUTPUT_FORMATS:
            raise invalid_choice("unsupported_output_format", "output_format", output_format,
                                 list(OUTPUT_FORMATS))
        mode = (self.apply_text_normalization or "auto").strip().lower()
        if mode not in NORMALIZATION:
            raise invalid_choice("invalid_text_normalization", "apply_text_normalization",
                                 self.apply_text_normalization, list(NORMALIZATION))
        speed = self.voice_settings.speed if self.voice_settings else None
        return GenerateRequest(text=self.text, speaker=voice_id, format=fmt, stream=stream,
                               normalize=NORMALIZATION[mode], language=self.language_code,
                               seed=self.seed, speed=speed,
                               pronunciations=self.pronunciations)
