"""The OpenTelemetry bridge (`otel`): tracekit's spans into the app's own TracerProvider.

For teams already on OpenTelemetry: each finished span is started again through
the globally registered TracerProvider (`opentelemetry.trace.get_tracer`), with
its name, kind, start time, every attribute the OTLP exporter sends
(`_otlp.span_attributes`: `gen_ai.*`, usage, inputs and outputs, the root's
session, user, metadata and tags), its status and events, and ended at its end
time. So the app's sampler (which sees the attributes at start), processors and
exporters apply, and its resource names the service.

Ids. A span is recreated under a parent context built from its parent's ids, so
it keeps its trace id and parent. Its own span id comes from the tracer: with
the OpenTelemetry SDK's tracer (the usual case), the bridge's own tracer (scope
`tracekit`) is given an id generator that hands out tracekit's ids, so every id
is kept: the `traceparent` tracekit sent, OpenTelemetry spans nested inside
tracekit spans and the file store all name the same spans. With another
TracerProvider implementation the ids are new; the tree is kept (children are
started under their recreated parent), a root without a parent gets a new
trace id, and every span carries `tracekit.trace_id` and `tracekit.span_id`.

Imported only when `otel` is configured; it imports `opentelemetry` (the API).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from tracekit._guard import warn_limited
from tracekit.exporters._otlp import _CLIENT_TYPES, any_value, counted_spans, span_attributes
from tracekit.exporters.base import SUCCESS, BaseExporter, ExportResult, TraceRecord

SCOPE = "tracekit"


class _TracekitIds:
    """An OpenTelemetry SDK id generator that hands out the ids of the span being
    recreated (set just before each `start_span`, under the exporter's lock)."""

    def __init__(self) -> None:
        self.trace_id = 0
        self.span_id = 0

    def generate_trace_id(self) -> int:
        return self.trace_id

    def generate_span_id(self) -> int:
        return self.span_id

    def is_trace_id_random(self) -> bool:
        return False  # tracekit's ids are random, but the test clock's are not: no promise


# One for the process: every bridge exporter (a reconfiguration makes a new one) uses
# the same tracer of the provider, so the ids it hands out and the lock are shared too.
_IDS = _TracekitIds()
_LOCK = threading.Lock()


def _plain(value: Mapping[str, Any]) -> Any:
    """An OTLP AnyValue (`_otlp.any_value`) back as an OpenTelemetry attribute value,
    so both paths encode a value the same way (maps and mixed lists as JSON)."""
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return value["doubleValue"]
    return [_plain(v) for v in value["arrayValue"]["values"]]


def attributes_of(items: Mapping[str, Any]) -> dict[str, Any]:
    """Attribute values OpenTelemetry accepts; None values are left out."""
    return {k: _plain(any_value(v)) for k, v in items.items() if v is not None}


def _ordered(spans: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Parents before their children; spans whose parent is not in the record first."""
    ids = {s.get("span_id") for s in spans}
    children: dict[Any, list[Mapping[str, Any]]] = {}
    top = []
    for span in spans:
        parent = span.get("parent_id")
        if parent and parent in ids and parent != span.get("span_id"):
            children.setdefault(parent, []).append(span)
        else:
            top.append(span)
    ordered: list[Mapping[str, Any]] = []
    queue = top
    while queue:
        ordered.extend(queue)
        queue = [c for s in queue for c in children.pop(s.get("span_id"), [])]
    for rest in children.values():  # a cycle: never produced, but never lost either
        ordered.extend(rest)
    return ordered


class OtelBridgeExporter(BaseExporter):
    """Hands every span to the app's global OpenTelemetry TracerProvider.

    Example:
        trace.set_tracer_provider(provider)          # the app's own setup
        tracekit.configure(tracking_uri="otel")      # or TRACEKIT_TRACKING_URI=otel
    """

    @property
    def destination(self) -> str:
        return "otel"

    def _tracer(self) -> tuple[Any, bool] | None:
        """The bridge's tracer and whether it keeps tracekit's ids; None without a provider."""
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider):
            return None
        from tracekit import __version__

        tracer: Any = provider.get_tracer(SCOPE, __version__)
        # The OpenTelemetry SDK's Tracer draws every id from its `id_generator` (its
        # documented extension point); this tracer is the bridge's alone.
        keeps = type(tracer).__module__.startswith("opentelemetry.sdk") and hasattr(
            tracer, "id_generator"
        )
        if keeps and tracer.id_generator is not _IDS:
            tracer.id_generator = _IDS
        return tracer, keeps

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        found = self._tracer()
        if found is None:
            warn_limited(
                "otel-no-provider",
                "tracekit: the `otel` destination found no OpenTelemetry TracerProvider "
                "(register one with opentelemetry.trace.set_tracer_provider before tracing); "
                "%d trace(s) not exported there",
                len(traces),
            )
            return ExportResult(ok=False, message="no OpenTelemetry TracerProvider registered")
        tracer, keeps = found
        with _LOCK:
            for record in traces:
                self._trace(tracer, keeps, record)
        return SUCCESS

    def _trace(self, tracer: Any, keeps: bool, record: Mapping[str, Any]) -> None:
        trace_id = int(record["trace_id"], 16)
        created: dict[str, Any] = {}
        counted = counted_spans(record)  # which spans' token counts a backend may sum
        for span in _ordered(record.get("spans") or []):
            parent_id = span.get("parent_id")
            if parent_id in created:
                parent = trace.set_span_in_context(created[parent_id], otel_context.Context())
            elif parent_id:  # a remote or OpenTelemetry parent: this is a fragment's root
                remote = trace.SpanContext(
                    trace_id,
                    int(parent_id, 16),
                    is_remote=True,
                    trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
                )
                parent = trace.set_span_in_context(
                    trace.NonRecordingSpan(remote), otel_context.Context()
                )
            else:
                parent = otel_context.Context()  # a root: no current span leaks in
            plain = span_attributes(span, record, False, counted)
            attributes = attributes_of(plain)
            if keeps:
                _IDS.trace_id = trace_id
                _IDS.span_id = int(span["span_id"], 16)
            else:
                attributes["tracekit.trace_id"] = record["trace_id"]
                attributes["tracekit.span_id"] = span["span_id"]
            start = span.get("start_time_ns") or 0
            otel_span = tracer.start_span(
                str(span.get("name", "")),
                context=parent,
                kind=trace.SpanKind.CLIENT
                if span.get("span_type") in _CLIENT_TYPES
                else trace.SpanKind.INTERNAL,
                attributes=attributes,
                start_time=start,
            )
            created[span["span_id"]] = otel_span
            for event in span.get("events") or []:
                if isinstance(event, Mapping):
                    otel_span.add_event(
                        str(event.get("name", "event")),
                        attributes_of(event.get("attributes") or {}),
                        timestamp=event.get("timestamp_ns") or span.get("end_time_ns") or start,
                    )
            status = span.get("status") or {}
            code = status.get("code") if isinstance(status, Mapping) else str(status)
            if code == "OK":
                otel_span.set_status(trace.StatusCode.OK)
            elif code == "ERROR":
                message = status.get("message") if isinstance(status, Mapping) else None
                otel_span.set_status(trace.Status(trace.StatusCode.ERROR, message or None))
            otel_span.end(end_time=span.get("end_time_ns") or start)

    def keep(self, traces: Sequence[TraceRecord]) -> ExportResult:
        """At exit, what the worker did not reach: handing spans over costs little
        (the app's processors export them, within their own exit flush)."""
        return self.export(traces)

    def force_flush(self, timeout: float | None = None) -> bool:
        """Flush the app's provider too, so `tracekit.flush()` reaches its exporters."""
        flush = getattr(trace.get_tracer_provider(), "force_flush", None)
        if not callable(flush):
            return True
        millis = 30_000 if timeout is None else max(1, int(timeout * 1000))
        return bool(flush(millis))
