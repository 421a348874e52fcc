"""Voice cloning: a reference clip (any format PyAV decodes) → a voice's 32 global tokens.

The clip is decoded and resampled in process to 16 kHz mono (channels averaged), checked, then
prepared as upstream's ``BiCodecTokenizer`` does (volume normalisation; the first
``ref_segment_duration`` seconds, a short clip repeated to fill them) and run through BiCodec's
speaker encoder. Every rejection is a :class:`CloneError` whose ``code`` is stable, for a route to
turn into a 400.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch

from veena.plugins.spark.bicodec.speaker import (BiCodecSpeakerEncoder, reference_clip,
                                                 volume_normalize)


class CloneErrorCode(str, Enum):
    TOO_LARGE = "clip_too_large"
    UNDECODABLE = "clip_undecodable"
    TOO_SHORT = "clip_too_short"
    TOO_LONG = "clip_too_long"
    SILENT = "clip_silent"


class CloneError(ValueError):
    """A clip that cannot become a voice; ``code`` is stable, ``str()`` is for people."""

    def __init__(self, code: CloneErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ClipLimits:
    max_bytes: int = 20 * 1024 * 1024
    min_seconds: float = 2.0
    max_seconds: float = 60.0
    silence_peak: float = 1e-3  # below -60 dBFS everywhere: nothing to learn a voice from


def decode_clip(data: bytes, sample_rate: int, max_seconds: float) -> np.ndarray:
    """Decodes the first audio stream of ``data`` to float32 mono at ``sample_rate``; stops a
    little past ``max_seconds`` so an overlong upload costs no more than that."""
    import av

    stop = int((max_seconds + 1.0) * sample_rate)
    chunks: list[np.ndarray] = []
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise CloneError(CloneErrorCode.UNDECODABLE, "the file has no audio stream")
            stream = container.streams.audio[0]
            # Rate and sample format only: swresample's own downmix weighs stereo by -3 dB, and a
            # plain channel average is what "mono" means here.
            resampler = av.AudioResampler(format="fltp", rate=sample_rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().mean(axis=0))
                    total += chunks[-1].shape[0]
                if total > stop:
                    break
            else:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().mean(axis=0))
    except CloneError:
        raise
    except (av.FFmpegError, ValueError, EOFError, IndexError) as exc:
        raise CloneError(CloneErrorCode.UNDECODABLE, f"the clip could not be decoded: {exc}") from exc
    if not chunks:
        raise CloneError(CloneErrorCode.UNDECODABLE, "the clip holds no audio samples")
    audio = np.concatenate(chunks).astype(np.float32, copy=False)
    if not np.isfinite(audio).all():
        raise CloneError(CloneErrorCode.UNDECODABLE, "the clip decodes to non-finite samples")
    return audio


def check_clip(audio: np.ndarray, sample_rate: int, limits: ClipLimits) -> None:
    """Too short, too long or silent clips raise :class:`CloneError`."""
    seconds = audio.shape[0] / sample_rate
    if seconds < limits.min_seconds:
        raise CloneError(CloneErrorCode.TOO_SHORT,
                         f"the clip is {seconds:.2f} s; at least {limits.min_seconds:g} s is needed")
    if seconds > limits.max_seconds:
        raise CloneError(CloneErrorCode.TOO_LONG,
                         f"the clip is longer than {limits.max_seconds:g} s")
    if float(np.max(np.abs(audio))) < limits.silence_peak:
        raise CloneError(CloneErrorCode.SILENT, "the clip is silent")


def prepare_reference(audio: np.ndarray, model: BiCodecSpeakerEncoder) -> torch.Tensor:
    """(ref_samples,) float32: upstream's volume normalisation and reference-clip length."""
    if model.config.volume_normalize:
        audio = volume_normalize(audio)
    return torch.from_numpy(np.ascontiguousarray(reference_clip(audio, model.config.ref_samples),
                                                 dtype=np.float32))


def clone_global_tokens(model: BiCodecSpeakerEncoder, audio_bytes: bytes,
                        limits: ClipLimits = ClipLimits()) -> list[int]:
    """An encoded clip → its ``token_num`` (32) global tokens, each in [0, 4096).

    Raises :class:`CloneError` (``clip_too_large``, ``clip_undecodable``, ``clip_too_short``,
    ``clip_too_long``, ``clip_silent``). CPU-bound: call it from a worker thread.
    """
    if len(audio_bytes) > limits.max_bytes:
        raise CloneError(CloneErrorCode.TOO_LARGE,
                         f"the clip is {len(audio_bytes)} bytes; the limit is {limits.max_bytes}")
    if not audio_bytes:
        raise CloneError(CloneErrorCode.UNDECODABLE, "the clip is empty")
    audio = decode_clip(audio_bytes, model.sample_rate, limits.max_seconds)
    check_clip(audio, model.sample_rate, limits)
    wav = prepare_reference(audio, model)
    device = next(model.parameters()).device
    with torch.inference_mode():
        tokens = model(wav.unsqueeze(0).to(device))
    return [int(t) for t in tokens[0].tolist()]
