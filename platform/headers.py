"""The one place that builds response headers."""

from __future__ import annotations

from veena.platform.job import Job
from veena.platform.runtime import Runtime


def response_headers(job: Job, runtime: Runtime, *, whole_body: bool) -> dict[str, str]:
    """Headers for a synthesis response.

    Always: ``X-Request-ID``, ``X-Model-Version``, ``X-Voice``, ``X-Sample-Rate`` and whatever
    plugins put in ``job.extra_headers``. Streams add ``Cache-Control: no-cache`` and
    ``X-Accel-Buffering: no``; whole bodies add ``X-TTFB-ms``, ``X-RTF`` and
    ``X-Audio-Duration-s``, which are known only once synthesis has finished.
    """
    headers = {
        "X-Request-ID": job.request_id,
        "X-Model-Version": runtime.config.server.model_version,
        "X-Voice": job.speaker.name,
        "X-Sample-Rate": str(job.output.sample_rate),
        **job.extra_headers,
    }
    if whole_body:
        t = job.timings
        ttfb = t.ms_since_received(t.first_byte)
        synth_s = (t.finished or t.received) - (t.synthesis_started or t.received)
        headers["X-TTFB-ms"] = f"{ttfb:.1f}" if ttfb is not None else "0"
        headers["X-RTF"] = f"{synth_s / job.audio_seconds:.4f}" if job.audio_seconds else "0"
        headers["X-Audio-Duration-s"] = f"{job.audio_seconds:.3f}"
    else:
        headers["Cache-Control"] = "no-cache"
        headers["X-Accel-Buffering"] = "no"
    return headers


def error_headers(request_id: str) -> dict[str, str]:
    """Headers for an error response."""
    return {"X-Request-ID": request_id}
