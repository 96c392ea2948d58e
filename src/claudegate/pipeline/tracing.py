"""OpenTelemetry traces of calls, following the GenAI semantic conventions.

One span per call (``chat {model}``, kind SERVER, child of the caller's ``traceparent`` when it sent one),
with a child span for its wait at admission and one per upstream attempt (kind CLIENT, whose context goes to
the upstream as ``traceparent``); the reply carries the call span's ``traceparent`` back. Attributes are the
conventions' ``gen_ai.*`` (operation, provider, request and response model, ``max_tokens``, token usage
including cache reads and writes), ``error.type``, ``server.address`` and ``http.response.status_code`` on
attempts, and ``claudegate.*`` for what the conventions do not name (request id, organisation, user, key id,
upstream, attempts, cost, time to first token).

Off by default (no ``otel_endpoint``): the pipeline then holds no tracer, nothing here is imported, and a
call pays one ``is None`` test per stage. On, spans go through the SDK's batch processor to an OTLP/HTTP
collector; ``opentelemetry-sdk`` and its OTLP exporter come with the ``otel`` extra and are imported only
here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from claudegate.pipeline.sink import RawHeaders, ResponseSink

if TYPE_CHECKING:
    import asyncio

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

    from claudegate.pipeline.relay import ReplyResult
    from claudegate.pipeline.request import CallRequest

__all__ = ["AttemptSpan", "CallSpan", "CallTracing", "TracedSink"]

_TRACE_HEADERS = (b"traceparent", b"tracestate")


class CallTracing:
    """Makes the spans of calls; one per process, closed (spans flushed) with the services."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._provider = provider
        self._tracer: Tracer = provider.get_tracer("claudegate")
        self._propagator = TraceContextTextMapPropagator()
        self._kinds = (SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL)
        self._error = (Status, StatusCode.ERROR)

    @classmethod
    def to_collector(cls, endpoint: str, service_name: str) -> CallTracing:
        """Spans sent over OTLP/HTTP (protobuf) to ``{endpoint}/v1/traces``."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return cls.with_exporter(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"), service_name, batch=True)

    @classmethod
    def with_exporter(cls, exporter: SpanExporter, service_name: str, *, batch: bool) -> CallTracing:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
        return cls(provider)

    def start(self, call: CallRequest) -> CallSpan:
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in call.headers
            if name in _TRACE_HEADERS
        }
        parent = self._propagator.extract(carrier) if carrier else None
        model = call.model or "unknown"
        span = self._tracer.start_span(
            f"chat {model}",
            context=parent,
            kind=self._kinds[0],
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "anthropic",
                "gen_ai.system": "anthropic",
                "gen_ai.request.model": model,
                "gen_ai.request.max_tokens": call.max_tokens,
                "claudegate.request_id": call.request_id,
                "claudegate.org": call.identity.org_name,
                "claudegate.user": call.identity.user_name or "",
                "claudegate.key_id": call.identity.key_id,
                "claudegate.streamed": call.stream,
            },
        )
        return CallSpan(self, span, call.stream)

    @staticmethod
    def traceparent(span: Span) -> RawHeaders:
        """The W3C ``traceparent`` header of ``span`` (written directly: the propagator's generic carrier
        handling costs several times more, on every call and attempt)."""
        context = span.get_span_context()
        value = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
        headers = [(b"traceparent", value.encode())]
        if context.trace_state:
            headers.append((b"tracestate", context.trace_state.to_header().encode()))
        return headers

    def child(
        self,
        parent: Span,
        name: str,
        kind: int,
        attributes: dict[str, Any],
        start_ns: int | None = None,
    ) -> Span:
        from opentelemetry.trace import set_span_in_context

        return self._tracer.start_span(
            name,
            context=set_span_in_context(parent),
            kind=self._kinds[kind],
            attributes=attributes,
            start_time=start_ns,
        )

    def fail(self, span: Span, error_type: str) -> None:
        status, code = self._error
        span.set_attribute("error.type", error_type)
        span.set_status(status(code, error_type))

    def close(self) -> None:
        """Send the spans still buffered, then stop."""
        self._provider.shutdown()


class CallSpan:
    """The span of one call and its children."""

    __slots__ = ("_headers", "_span", "_streamed", "_tracing")

    def __init__(self, tracing: CallTracing, span: Span, streamed: bool) -> None:
        self._tracing = tracing
        self._span = span
        self._streamed = streamed
        self._headers = tracing.traceparent(span)

    @property
    def reply_headers(self) -> RawHeaders:
        """``traceparent`` of this call, for the reply."""
        return self._headers

    def admitted(self, started_ns: int, upstream: str | None, queued: bool = True) -> None:
        """The call's wait at admission, from ``started_ns`` (time.time_ns) until now."""
        attributes: dict[str, Any] = {"claudegate.admission.wait_s": (time.time_ns() - started_ns) / 1e9}
        if upstream is not None:
            attributes["claudegate.upstream"] = upstream
        span = self._tracing.child(self._span, "admission", 2, attributes, started_ns)
        if upstream is None:
            self._tracing.fail(span, "refused")
        span.end()

    def attempt(self, upstream: str, url: str, number: int, model: str) -> AttemptSpan:
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": model,
            "claudegate.upstream": upstream,
            "claudegate.attempt": number,
            "server.address": url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0],
        }
        return AttemptSpan(self._tracing, self._tracing.child(self._span, f"chat {model}", 1, attributes))

    def end(self, result: ReplyResult, *, cost_usd: float | None, attempts: int) -> None:
        span = self._span
        usage = result.usage
        attributes: dict[str, Any] = {
            "gen_ai.usage.input_tokens": usage.input_tokens
            + usage.cache_creation_input_tokens
            + usage.cache_read_input_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "gen_ai.usage.cache_creation.input_tokens": usage.cache_creation_input_tokens,
            "gen_ai.usage.cache_read.input_tokens": usage.cache_read_input_tokens,
            "http.response.status_code": result.status,
            "claudegate.attempts": attempts,
        }
        if result.model:
            attributes["gen_ai.response.model"] = result.model
        if result.upstream_request_id:
            attributes["claudegate.upstream_request_id"] = result.upstream_request_id
        if result.upstream:
            attributes["claudegate.upstream"] = result.upstream
        if cost_usd is not None:
            attributes["claudegate.cost_usd"] = cost_usd
        span.set_attributes(attributes)
        if result.error_type is not None or result.status >= 400:
            self._tracing.fail(span, result.error_type or str(result.status))
        span.end()


class AttemptSpan:
    """One try on one upstream."""

    __slots__ = ("_span", "_tracing", "headers")

    def __init__(self, tracing: CallTracing, span: Span) -> None:
        self._tracing = tracing
        self._span = span
        self.headers = tracing.traceparent(span)

    def with_context(self, headers: RawHeaders) -> RawHeaders:
        """The upstream's request headers with this attempt's ``traceparent`` instead of the caller's."""
        return [pair for pair in headers if pair[0] not in _TRACE_HEADERS] + self.headers

    def end(self, status: int | None, error_type: str | None) -> None:
        if status:
            self._span.set_attribute("http.response.status_code", status)
        if error_type is not None:
            self._tracing.fail(self._span, error_type)
        self._span.end()


class TracedSink:
    """A sink whose reply carries the call's ``traceparent``; everything else goes to the sink it wraps."""

    __slots__ = ("_extra", "_sink")

    def __init__(self, sink: ResponseSink, extra: RawHeaders) -> None:
        self._sink = sink
        self._extra = extra

    @property
    def gone(self) -> asyncio.Event:
        return self._sink.gone

    @property
    def shut_down(self) -> bool:
        return self._sink.shut_down

    def on_gone(self, callback: Callable[[], None]) -> None:
        self._sink.on_gone(callback)

    async def start(self, status: int, headers: RawHeaders) -> None:
        await self._sink.start(status, [*headers, *self._extra])

    async def send(self, chunk: bytes, *, more: bool) -> None:
        await self._sink.send(chunk, more=more)
