"""The built-in stage implementations: run the registered normalizers, pick the synthesizer and
codec from their registries, encode off the event loop. Third-party plugins wrap these hooks or
register more normalizers, synthesizers and codecs; nothing here is special-cased elsewhere."""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator

from veena.platform.audio import PCM
from veena.platform.encoding import encode_stream
from veena.platform.hookspecs import hookimpl
from veena.platform.job import Job
from veena.platform.runtime import Runtime
from veena.platform.textsplit import split_sentences


class UnicodeNormalizer:
    """NFC, control characters dropped, runs of whitespace collapsed."""

    name = "unicode"

    def normalize(self, text: str, job: Job) -> str:
        text = unicodedata.normalize("NFC", text)
        text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
        return " ".join(text.split())


@hookimpl
def veena_register_normalizers(runtime: Runtime):
    return [UnicodeNormalizer()]


def ordered_normalizers(runtime: Runtime):
    """Normalizers in ``[stages] normalizers`` order, or all of them by name when unset."""
    names = runtime.config.stages.normalizers or runtime.normalizers.names()
    return [runtime.normalizers.get(n) for n in names]


@hookimpl(trylast=True)
def veena_normalize_text(text: str, job: Job, runtime: Runtime) -> str:
    if not job.normalize:
        return text
    for normalizer in ordered_normalizers(runtime):
        text = normalizer.normalize(text, job)
    return text


@hookimpl(trylast=True)
def veena_chunk_text(text: str, job: Job, runtime: Runtime) -> list[str]:
    if not job.chunking:
        return [text]
    return split_sentences(text) or [text]


@hookimpl(trylast=True)
def veena_synthesize(job: Job, runtime: Runtime) -> AsyncIterator[PCM]:
    return runtime.synthesizers.get(job.synthesizer).stream(job)


@hookimpl(trylast=True)
def veena_process_audio(stream: AsyncIterator[PCM], job: Job, runtime: Runtime) -> AsyncIterator[PCM]:
    return stream


@hookimpl(trylast=True)
def veena_encode(stream: AsyncIterator[PCM], job: Job, runtime: Runtime) -> AsyncIterator[bytes]:
    codec = runtime.codec(job.output.codec)
    encoder = codec.open(job.output.sample_rate, streaming=job.stream, bitrate=job.output.bitrate)
    return encode_stream(stream, encoder, job)
