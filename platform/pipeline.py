"""One request through every stage: admit, prepare (normalize, chunk), then stream audio bytes."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, TypeVar

import msgspec

from veena.codecs.base import default_rate
from veena.codecs.formats import parse_format
from veena.codecs.tempo import stretch
from veena.platform import alignment
from veena.platform.audio import PCM
from veena.platform.awaitables import await_maybe
from veena.platform.errors import VeenaError, echo, invalid_choice
from veena.platform.faults import begin_draining, gpu_fault
from veena.platform.ids import new_id
from veena.platform.logs import event, ms
from veena.platform.job import Job, OutputFormat, Principal, SamplingOptions
from veena.platform.runtime import RequestInfo, RequestRecord, Runtime
from veena.platform.schemas import MAX_SPEED, MIN_SPEED, GenerateRequest

log = logging.getLogger("veena.pipeline")
S = TypeVar("S", bound=msgspec.Struct)


def decode_body(body: bytes, struct: type[S]) -> S:
    """Decodes a JSON body; a 400 ``invalid_request`` names the offending field."""
    try:
        return msgspec.json.decode(body, type=struct, strict=True)
    except msgspec.ValidationError as exc:
        raise VeenaError("invalid_request", str(exc).replace("`$.", "`"), 400,
                         param=field_of(str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise VeenaError("invalid_json", f"request body is not valid JSON: {exc}", 400) from exc


def field_of(message: str) -> str | None:
    """The top-level request field a msgspec validation message is about, if it names one."""
    found = re.search(r"missing required field `(\w+)`|at `(?:\$\.)?(\w+)", message)
    return (found.group(1) or found.group(2)) if found else None


def new_request_id(client_value: str | None) -> str:
    """The client's ``X-Request-ID`` when it is sane, else a fresh one."""
    if client_value and len(client_value) <= 128 and client_value.isprintable():
        return client_value
    return new_id()


class Pipeline:
    """Runs the stage hooks for one request at a time; shared by HTTP and the CLI."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.hook = runtime.pm.hook
        self._background: set[asyncio.Task[Any]] = set()
        self.active_streams = 0
        self._jobs: dict[int, Job] = {}  # streams running now, for stop_streams()

    def stop_streams(self, reason: str = "shutdown") -> int:
        """Ends every running stream at its next audio block, properly (encoder tail, body
        terminator), with error code ``reason``; returns how many there were."""
        for job in self._jobs.values():
            job.stop_reason = reason
        return len(self._jobs)

    async def admit(self, request: RequestInfo) -> Principal | None:
        """Fan-out authentication: the first Principal wins; a plugin raises to reject."""
        with self.runtime.telemetry.span("auth"):
            for result in self.hook.veena_authenticate(request=request, runtime=self.runtime):
                result = await await_maybe(result)
                if result is not None:
                    return result
        return None

    def prepare(self, req: GenerateRequest, request_id: str,
                principal: Principal | None = None) -> Job:
        """Validates the request against registries and config, then normalizes and chunks."""
        cfg, rt = self.runtime.config, self.runtime
        text = req.text
        if not text.strip():
            raise VeenaError("empty_text", "text must contain at least one non-space character",
                             param="text")
        if len(text) > cfg.server.max_text_chars:
            raise VeenaError("text_too_long", f"text has {len(text)} characters; the limit is "
                             f"{cfg.server.max_text_chars}", 400, param="text",
                             max_chars=cfg.server.max_text_chars)
        name = req.speaker or cfg.defaults.speaker
        speaker = (self.hook.veena_resolve_speaker(name=name, principal=principal, runtime=rt)
                   or rt.speakers.resolve(name))
        synthesizer = rt.synthesizers.get(cfg.stages.synthesizer)
        output = self._output(req, synthesizer.sample_rate)
        self._check_language(req.language)
        speed = self._speed(req.speed)
        job = Job(
            request_id=request_id, text=text, speaker=speaker, synthesizer=synthesizer,
            output=output,
            stream=cfg.defaults.stream if req.stream is None else req.stream,
            normalize=cfg.defaults.normalize if req.normalize is None else req.normalize,
            chunking=cfg.defaults.chunking if req.chunking is None else req.chunking,
            language=req.language, pronunciations=tuple(req.pronunciations or ()),
            sampling=_sampling(req), principal=principal)
        if speed != 1.0:
            job.speed = speed
            native = getattr(synthesizer, "speed_factor", None)
            own = native(speed, speaker) if native is not None else 1.0
            if abs(speed / own - 1.0) > 0.005:
                job.tempo = speed / own
        t = time.perf_counter()
        with rt.telemetry.span("normalize", chars=len(text)):
            job.normalized_text = self.hook.veena_normalize_text(text=text, job=job, runtime=rt)
        event("tts.normalization_done", chars_in=len(text), chars_out=len(job.normalized_text or ""),
              normalize=job.normalize, ms=ms(t))
        if not job.normalized_text or not job.normalized_text.strip():
            raise VeenaError("empty_text", "nothing speakable is left after normalization")
        self._check_duration(job.normalized_text)
        t = time.perf_counter()
        with rt.telemetry.span("chunk") as span:
            job.chunks = self.hook.veena_chunk_text(text=job.normalized_text, job=job, runtime=rt)
            span.set_attribute("veena.chunks", len(job.chunks))
        event("tts.chunking_decision", chunks=len(job.chunks), chunking=job.chunking,
              max_chunk_chars=max(map(len, job.chunks)), ms=ms(t))
        return job

    def _check_duration(self, text: str) -> None:
        """With a request deadline (``server.request_deadline_s``, e.g. Modal's web request
        limit), refuses up front, with a 413 ``audio_too_long``, text whose audio is unlikely to
        be synthesized in time: estimated audio seconds (characters / speech_chars_per_second)
        times the slowest expected real-time factor (``deadline_rtf``) over the deadline."""
        srv = self.runtime.config.server
        if not srv.request_deadline_s:
            return
        max_audio = srv.request_deadline_s / srv.deadline_rtf
        estimate = len(text) / srv.speech_chars_per_second
        if estimate > max_audio:
            raise VeenaError(
                "audio_too_long",
                f"the text would make about {estimate:.0f} s of audio; one request on this server "
                f"can stream at most about {max_audio:.0f} s (its limit is "
                f"{srv.request_deadline_s:g} s a request): split the text into several requests",
                413, estimated_audio_seconds=round(estimate, 1),
                max_audio_seconds=round(max_audio, 1),
                max_chars=int(max_audio * srv.speech_chars_per_second))

    @staticmethod
    def _speed(speed: float | None) -> float:
        """The speaking-rate factor; 400 ``invalid_speed`` outside ``MIN_SPEED``-``MAX_SPEED``.

        A synthesizer with its own rate control has ``speed_factor(speed, speaker)``, returning
        the part of ``speed`` it applies itself (eSpeak NG: its words-per-minute rate, within
        its limits); whatever is left (all of it for other voices) is a pitch-preserving
        time-stretch of the synthesized audio (``veena.codecs.tempo``, ``job.tempo``)."""
        if speed is None or speed == 1.0:
            return 1.0
        if not MIN_SPEED <= speed <= MAX_SPEED:
            raise VeenaError("invalid_speed", f"speed must be {MIN_SPEED}-{MAX_SPEED}, not "
                             f"{speed}", 400, param="speed", valid={"min": MIN_SPEED,
                                                                     "max": MAX_SPEED})
        return speed

    def _check_language(self, language: str | None) -> None:
        """400 ``unsupported_language`` for a code no catalog voice declares (compared by
        primary subtag: ``en-IN`` passes where a voice has ``en``)."""
        if language is None:
            return
        known = {code.lower().split("-")[0] for s in self.runtime.speakers for code in s.languages}
        wanted = language.strip().lower().replace("_", "-").split("-")[0]
        if wanted not in known:
            raise VeenaError("unsupported_language", f"unknown language {echo(language)}", 400,
                             param="language", valid=sorted(known))

    def _output(self, req: GenerateRequest, native_rate: int) -> OutputFormat:
        rt = self.runtime
        name, rate_in_name, bitrate = parse_format(req.format or rt.config.defaults.format)
        codec = rt.codec(name)
        if codec is None:
            raise invalid_choice("unsupported_format", "format", req.format, rt.codecs.names())
        rate = next((r for r in (req.sample_rate, rate_in_name, rt.config.defaults.sample_rate)
                     if r is not None), None)
        if rate is None:
            rate = default_rate(codec, native_rate)
        if rate not in codec.sample_rates:
            raise VeenaError("unsupported_sample_rate",
                             f"{codec.name} cannot be sent at {echo(rate)} Hz", 400,
                             param="sample_rate", valid=list(codec.sample_rates))
        bitrate = req.bitrate or bitrate
        if bitrate is not None and not _takes_bitrate(codec):
            able = sorted(c.name for c in rt.codecs if _takes_bitrate(c))
            raise VeenaError("unsupported_bitrate", f"{codec.name} takes no bitrate; formats "
                             f"that take one: {', '.join(able)}", 400, param="bitrate",
                             valid_formats=able)
        try:
            codec.check_bitrate(rate, bitrate)
        except ValueError as exc:
            raise VeenaError("unsupported_bitrate", str(exc), 400, param="bitrate") from exc
        return OutputFormat(codec=codec, sample_rate=rate, bitrate=bitrate)

    async def audio(self, job: Job, *, record: bool = True) -> AsyncIterator[bytes]:
        """Synthesis -> audio processing -> encoding, as one byte stream. Records the request
        (fan-out ``veena_request_finished``, metrics) when the stream ends for any reason,
        unless ``record`` is false (the warm-up).

        A GPU fault becomes a 503 ``gpu_fault`` and starts draining the server; past
        ``server.request_deadline_s`` the audio stops at the next block and the stream ends
        properly (``job.deadline_exceeded``).
        """
        rt = self.runtime
        error_code = None
        limit = rt.config.server.request_deadline_s
        deadline = job.timings.received + limit if limit else None
        job.timings.synthesis_started = time.perf_counter()
        self.active_streams += 1
        self._jobs[id(job)] = job
        event("tts.inference_started", synthesizer=job.synthesizer.name, speaker=job.speaker.name,
              format=job.output.codec.name, sample_rate=job.output.sample_rate, stream=job.stream,
              chunks=len(job.chunks))
        try:
            tel = rt.telemetry
            pcm = tel.traced_stream("synthesize", self.hook.veena_synthesize(job=job, runtime=rt))
            if alignment.wants_words(job):
                pcm = alignment.tap(pcm, job, rt)
            if job.tempo:
                pcm = stretch(pcm, job.tempo)
            pcm = tel.traced_stream("process", self.hook.veena_process_audio(stream=pcm, job=job, runtime=rt))
            encoded = tel.traced_stream("encode", self.hook.veena_encode(
                stream=_measure(pcm, job, deadline), job=job, runtime=rt))
            async with aclosing(encoded):
                async for data in encoded:
                    if job.timings.first_byte is None:
                        job.timings.first_byte = time.perf_counter()
                        event("tts.first_audio_emitted", bytes=len(data),
                              ttfb_ms=job.timings.ms_since_received(job.timings.first_byte),
                              first_pcm_ms=job.timings.ms_since_received(job.timings.first_audio))
                    job.chunks_delivered = job.chunk_started + 1
                    job.bytes_sent += len(data)
                    yield data
            if job.deadline_exceeded:
                job.outcome, error_code = "failed", "deadline_exceeded"
            elif job.stop_reason:
                job.outcome, error_code = "failed", job.stop_reason
            else:
                job.chunks_delivered = len(job.chunks)
                job.outcome = "completed"
        except (asyncio.CancelledError, GeneratorExit):
            job.outcome = "cancelled"
            raise
        except VeenaError as exc:
            job.outcome, error_code = "failed", exc.code
            raise
        except Exception as exc:
            kind = gpu_fault(exc)
            if kind is None:
                job.outcome, error_code = "failed", "synthesis_failed"
                log.exception("synthesis failed", extra={"request_id": job.request_id})
                raise
            job.outcome, error_code = "failed", "gpu_fault"
            self._gpu_fault(kind, exc, job)
            raise VeenaError("gpu_fault", "the GPU failed during synthesis; retry the request",
                             503, headers={"Retry-After": "1"}) from exc
        finally:
            self.active_streams -= 1
            self._jobs.pop(id(job), None)
            job.timings.finished = time.perf_counter()
            finished = to_record(job, error_code)
            event("tts.stream_completed", outcome=job.outcome, error_code=error_code,
                  audio_seconds=finished.audio_seconds, bytes=finished.bytes_sent,
                  chunks_delivered=job.chunks_delivered, ttfb_ms=finished.ttfb_ms,
                  total_ms=finished.total_ms,
                  rtf=round((job.timings.finished - job.timings.synthesis_started) / job.audio_seconds, 4)
                  if job.audio_seconds else None)
            if record:
                self._metrics(job, finished)
                self._record(finished)

    def _gpu_fault(self, kind: str, exc: Exception, job: Job) -> None:
        """Counts and logs the fault; the first one starts draining the server."""
        self.runtime.telemetry.gpu_faults.add(1, {"kind": kind})
        event("tts.gpu_fault", kind=kind, error=type(exc).__name__, detail=str(exc)[:300],
              synthesizer=job.synthesizer.name, bytes_sent=job.bytes_sent)
        task = begin_draining(self.runtime, kind)
        if task is not None:
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _metrics(self, job: Job, record: RequestRecord) -> None:
        tel, labels = self.runtime.telemetry, {"voice": record.speaker, "format": record.format}
        if record.ttfb_ms is not None:
            tel.ttfb.record(record.ttfb_ms / 1000, labels)
        if job.audio_seconds and job.outcome == "completed":
            tel.rtf.record((job.timings.finished - job.timings.synthesis_started) / job.audio_seconds,
                           labels)
        tel.audio_seconds.add(job.audio_seconds, labels)
        tel.encode_seconds.record(job.encode_seconds, {"format": record.format})

    def _record(self, record: RequestRecord) -> None:
        # A fresh task: the request's own task may be cancelled already.
        self._background.add(asyncio.get_running_loop().create_task(self._store(record)))

    async def _store(self, record: RequestRecord) -> None:
        try:
            with self.runtime.telemetry.span("store", outcome=record.outcome):
                results = self.hook.veena_request_finished(record=record, runtime=self.runtime)
                for result in await asyncio.gather(*[await_maybe(r) for r in results],
                                                   return_exceptions=True):
                    if isinstance(result, BaseException):
                        log.error("a request_finished hook failed: %r", result)
        finally:
            self._background.discard(asyncio.current_task())

    async def drain(self) -> None:
        """Waits for request records still being handed to plugins (used at shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
            # gather() of finished tasks returns without yielding to the loop, so the tasks'
            # done-callbacks (which discard them) never get to run: drop them here.
            self._background.difference_update([t for t in self._background if t.done()])


async def _measure(stream: AsyncIterator[PCM], job: Job,
                   deadline: float | None = None) -> AsyncIterator[PCM]:
    """Times and counts the audio; past ``deadline`` (a ``perf_counter`` time) stops pulling
    audio, so the encoder finishes the file properly before the platform cuts the request."""
    async with aclosing(stream):
        async for block in stream:
            if job.timings.first_audio is None:
                job.timings.first_audio = time.perf_counter()
            job.audio_seconds += block.seconds
            yield block
            if job.stop_reason:
                return  # stop_streams(): end here, the encoder writes its tail
            if deadline is not None and time.perf_counter() > deadline:
                job.deadline_exceeded = True
                event("tts.deadline_exceeded", audio_seconds=round(job.audio_seconds, 3),
                      chunks_started=job.chunk_started + 1,
                      chunks=len(job.chunks))
                return


def _takes_bitrate(codec: Any) -> bool:
    """Whether a codec has a bitrate setting (its optional ``takes_bitrate`` attribute)."""
    return getattr(codec, "takes_bitrate", False)


def _sampling(req: GenerateRequest) -> SamplingOptions:
    s = SamplingOptions()
    for name in ("temperature", "top_k", "top_p", "seed", "max_tokens"):
        value = getattr(req, name)
        if value is not None:
            setattr(s, name, value)
    return s


def to_record(job: Job, error_code: str | None = None) -> RequestRecord:
    """The storage/usage view of a finished job."""
    t = job.timings
    return RequestRecord(
        id=job.record_id,
        request_id=job.request_id, key_id=job.principal.key_id if job.principal else None,
        speaker=job.speaker.name, synthesizer=job.synthesizer.name, format=job.output.codec.name,
        sample_rate=job.output.sample_rate, stream=job.stream, original_text=job.text,
        normalized_text=job.normalized_text or "", chunks=len(job.chunks),
        chars_requested=sum(len(c) for c in job.chunks), chars_delivered=job.chars_delivered,
        audio_seconds=round(job.audio_seconds, 4), bytes_sent=job.bytes_sent,
        ttfb_ms=t.ms_since_received(t.first_byte), total_ms=t.ms_since_received(t.finished) or 0.0,
        outcome=job.outcome, error_code=error_code, created_at=time.time())

