"""OpenTelemetry traces and metrics for one runtime; metrics are exposed in Prometheus format.

One server span per HTTP request (``TelemetryMiddleware``) and one child span per pipeline stage
(auth, normalize, chunk, synthesize, process, encode, store), never one per audio block.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing, contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (BatchSpanProcessor, ConsoleSpanExporter,
                                            SimpleSpanProcessor)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from prometheus_client import CollectorRegistry, generate_latest

from veena.platform.config import TelemetryConfig

log = logging.getLogger("veena.telemetry")
CLIENT_CLOSED = 499
"""Status counted for a request whose client closed before an answer (nginx's convention)."""


class Telemetry:
    """Tracer, meter and the instruments the platform records."""

    def __init__(self, config: TelemetryConfig) -> None:
        resource = Resource.create({"service.name": config.service_name})
        # With traces going nowhere, spans are not recorded: a recorded span costs the event
        # loop about 50 us, a non-recording one about 20 us.
        self.tracer_provider = TracerProvider(
            resource=resource, sampler=ALWAYS_OFF if config.traces == "none" else None)
        self._add_exporter(config)
        self.tracer = self.tracer_provider.get_tracer("veena")
        self.registry = CollectorRegistry()
        self.meter_provider = MeterProvider(
            resource=resource, metric_readers=[PrometheusMetricReader(registry=self.registry)])
        meter = self.meter_provider.get_meter("veena")
        self._meter = meter
        self.requests = meter.create_counter("veena_requests", description="HTTP requests")
        self.ttfb = meter.create_histogram("veena_ttfb_seconds", unit="s",
                                           description="time to first audio byte")
        self.rtf = meter.create_histogram("veena_rtf", description="synthesis time / audio time")
        self.audio_seconds = meter.create_counter("veena_audio_seconds", unit="s",
                                                  description="audio delivered")
        self.encode_seconds = meter.create_histogram("veena_encode_seconds", unit="s",
                                                     description="encoder CPU time a request")
        self.events = meter.create_counter("veena_events",
                                           description="named occurrences (sr fallback, spills...)")
        self.gpu_faults = meter.create_counter(
            "veena_gpu_faults", description="GPU faults (CUDA out of memory, illegal memory "
            "access, dead engine) by kind; the first one drains the server")
        self.gauge("veena_process", "what the process holds: asyncio tasks of the serving "
                   "loop (tasks, the scrape's own included) and threads (threads)", _process)

    def _add_exporter(self, config: TelemetryConfig) -> None:
        if config.traces == "console":
            self.tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        elif config.traces == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError:
                log.warning("telemetry.otlp_unavailable: install the 'otlp' extra; traces off")
                return
            exporter = OTLPSpanExporter(endpoint=config.otlp_endpoint) if config.otlp_endpoint \
                else OTLPSpanExporter()
            self.tracer_provider.add_span_processor(BatchSpanProcessor(exporter))

    def gauge(self, name: str, description: str,
              read: Callable[[], float | dict[tuple[tuple[str, str], ...], float]]) -> None:
        """Publishes a value read at scrape time (queue depths, batch sizes)."""
        def callback(options: CallbackOptions) -> Iterator[Observation]:
            value = read()
            if isinstance(value, dict):
                for labels, v in value.items():
                    yield Observation(v, dict(labels))
            else:
                yield Observation(value)
        self._meter.create_observable_gauge(name, callbacks=[callback], description=description)

    @contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[trace.Span]:
        """A child span of the current request for a stage that runs in one go."""
        with self.tracer.start_as_current_span(name, attributes=_clean(attributes)) as span:
            yield span

    async def traced_stream(self, name: str, stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Passes ``stream`` through inside one span from its first pull to its end."""
        span = self.tracer.start_span(name)
        items = 0
        try:
            # aclosing: closing this wrapper must close the stage inside it at once (a client
            # that disconnects stops synthesis and frees its stream slot now, not at GC).
            async with aclosing(stream):
                async for item in stream:
                    items += 1
                    yield item
        finally:
            span.set_attribute("veena.items", items)
            span.end()

    def prometheus(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _process() -> dict[tuple[tuple[str, str], ...], float]:
    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:  # scraped from outside the loop (no running loop): not known
        tasks = -1
    return {(("value", "tasks"),): float(tasks),
            (("value", "threads"),): float(threading.active_count())}


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {f"veena.{k}": v for k, v in attributes.items() if v is not None}


class TelemetryMiddleware:
    """ASGI middleware: one server span per HTTP request, open until the body is fully sent
    (or the client goes away), and the request counter by route, status, voice and format.
    A request whose client closed before any answer counts as status 499, not 500."""

    def __init__(self, app: Any, telemetry: Telemetry, routes: frozenset[str]) -> None:
        self.app = app
        self.telemetry = telemetry
        self.routes = routes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}
        started = False

        async def send_and_watch(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                status["code"], started = message["status"], True
            await send(message)

        route = scope.get("path", "")
        route = route if route in self.routes else "other"
        span = self.telemetry.tracer.start_span(
            f"{scope.get('method', 'GET')} {route}", kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": scope.get("method", ""), "url.path": route})
        token = otel_context.attach(trace.set_span_in_context(span))
        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            state = scope.get("state", {})
            if state.get("client_closed") and not started:
                status["code"] = CLIENT_CLOSED  # not a server error: nobody to answer
            span.set_attribute("http.response.status_code", status["code"])
            if state.get("request_id"):
                span.set_attribute("veena.request_id", state["request_id"])
            span.set_attribute("veena.duration_ms", round((time.perf_counter() - t0) * 1000, 2))
            span.end()
            otel_context.detach(token)
            self.telemetry.requests.add(1, {
                "route": route, "status": str(status["code"]),
                "voice": state.get("voice", ""), "format": state.get("format", "")})
