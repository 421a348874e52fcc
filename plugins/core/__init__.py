"""The built-in stage implementations: run the registered normalizers, stream from the job's
synthesizer, encode with the job's codec (CPU-bound codecs off the event loop). Third-party plugins
wrap these hooks or register more normalizers, synthesizers and codecs; nothing here is
special-cased elsewhere."""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator

from veena.platform import alignment
from veena.platform.audio import PCM
from veena.platform.encoding import encode_stream
from veena.platform.hookspecs import hookimpl
from veena.platform.job import Job
from veena.platform.runtime import Runtime


class UnicodeNormalizer:
    """NFC; format characters (ZWJ, soft hyphen, bidi marks) removed, other control characters
    turned into spaces; runs of spaces collapsed; line breaks kept, one at most in a row (they
    end sentences for the chunker)."""

    name = "unicode"
    order = 10

    def normalize(self, text: str, job: Job) -> str:
        text = unicodedata.normalize("NFC", text.replace("\r\n", "\n"))
        lines = (" ".join(_controls_out(line).split()) for line in text.split("\n"))
        return "\n".join(line for line in lines if line)


def _controls_out(line: str) -> str:
    if line.isprintable():  # the usual case: nothing to look at character by character
        return line
    return "".join(_CONTROL.get(unicodedata.category(ch), ch) for ch in line)


_CONTROL = {"Cc": " ", "Cf": "", "Cs": "", "Co": "", "Cn": ""}

DEFAULT_ORDER = 100
"""Where a normalizer without an ``order`` attribute runs among the unlisted ones."""


@hookimpl
def veena_register_normalizers(runtime: Runtime):
    return [UnicodeNormalizer()]


def ordered_normalizers(runtime: Runtime):
    """The normalizers in the order they run.

    Those named in ``[stages] normalizers`` come first, in the order listed; every other
    registered normalizer runs after them, by its ``order`` attribute (built-ins: ``unicode``
    10, ``text`` 50; default 100) and then by name. So a third-party normalizer runs after the
    built-in ones unless the list places it earlier, e.g. ``["unicode", "mine", "text"]``.
    """
    listed = [n.lower() for n in runtime.config.stages.normalizers]
    rest = sorted((n for n in runtime.normalizers.names() if n not in listed),
                  key=lambda n: (getattr(runtime.normalizers.get(n), "order", DEFAULT_ORDER), n))
    return [runtime.normalizers.get(n) for n in [*listed, *rest]]


@hookimpl(trylast=True)
def veena_normalize_text(text: str, job: Job, runtime: Runtime) -> str:
    if not job.normalize:
        return text
    for normalizer in ordered_normalizers(runtime):
        text = normalizer.normalize(text, job)
    return text


@hookimpl(trylast=True)
def veena_chunk_text(text: str, job: Job, runtime: Runtime) -> list[str]:
    """The whole text as one chunk: the fallback when no chunker plugin (``chunk``) answers."""
    return [text]


@hookimpl(trylast=True)
def veena_synthesize(job: Job, runtime: Runtime) -> AsyncIterator[PCM]:
    return job.synthesizer.stream(job)


@hookimpl(trylast=True)
def veena_process_audio(stream: AsyncIterator[PCM], job: Job, runtime: Runtime) -> AsyncIterator[PCM]:
    return stream


@hookimpl(trylast=True)
def veena_encode(stream: AsyncIterator[PCM], job: Job, runtime: Runtime) -> AsyncIterator[bytes]:
    out = job.output
    codec = out.codec
    return encode_stream(
        stream, lambda: codec.open(out.sample_rate, streaming=job.stream, bitrate=out.bitrate),
        job, inline=getattr(codec, "encode_inline", False))


@hookimpl(trylast=True)
def veena_align(job: Job, chunk: int, audio: PCM, runtime: Runtime) -> list[alignment.WordTime]:
    """The synthesizer's own word marks (exact), else an estimate by character count."""
    return alignment.builtin(job, chunk, audio)
