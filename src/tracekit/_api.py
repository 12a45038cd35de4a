"""Manual tracing and control: start_span, current span and trace, flush, configure."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tracekit import _otel, _propagation, _state, _stats, _tracer
from tracekit._context import current_parent, current_span
from tracekit._guard import guard, internal_error, warn_limited
from tracekit._span import NON_RECORDING, Span, SpanStatus, SpanType

if TYPE_CHECKING:
    from tracekit._config import Config


LIMITS = frozenset(
    {
        "max_spans_per_trace",
        "max_in_flight_traces",
        "max_queued_spans",
        "export_batch_spans",
        "max_value_chars",
        "max_trace_chars",
        "orphan_timeout",
    }
)


def start(name: str, span_type: str = SpanType.UNKNOWN, parent: Span | None = None) -> Span:
    """Start a span under `parent` (default: the current span) without making it current.

    The low-level form used by integrations and stream proxies; the caller must
    call `span.end()` exactly once (further calls are ignored). Never raises.
    """
    try:  # every traced call comes here: a plain `try` costs less than `guard`
        return start_under(name, span_type, current_parent() if parent is None else parent)
    except Exception as exc:
        internal_error("start span", exc)
    return NON_RECORDING


def start_under(name: str, span_type: str, parent: Span | None) -> Span:
    """Start a span under `parent`, or under an OpenTelemetry span started inside it
    when that is OpenTelemetry's current span (may raise: callers guard)."""
    span = _tracer.start_span(name, span_type, parent, _state.config())
    if parent is not None:
        other = _otel.foreign_parent(parent)
        if other is not None and span.is_recording:
            span.parent_id = other
    return span


class start_span:  # noqa: N801 - used like a function, as in OpenTelemetry
    """Trace a block of code as a span, nested under the current span.

    Args:
        name: the span's name.
        span_type: one of `tracekit.SpanType` (default `UNKNOWN`).
        inputs: recorded as the span's inputs.
        attributes: initial attributes.

    Example:
        with tracekit.start_span("retrieve", span_type="RETRIEVER", inputs={"q": q}) as span:
            docs = search(q)
            span.set_outputs(docs)

    An exception leaving the block is recorded on the span (status `ERROR`)
    and propagates unchanged; otherwise the span ends `OK`.
    """

    __slots__ = ("_attributes", "_inputs", "_name", "_otel", "_span", "_span_type", "_token")

    def __init__(
        self,
        name: str,
        span_type: str = SpanType.UNKNOWN,
        inputs: Any = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self._name = name
        self._span_type = span_type
        self._inputs = inputs
        self._attributes = attributes
        self._span: Span = NON_RECORDING
        self._token: Any = None
        self._otel: Any = None

    def __enter__(self) -> Span:
        if _tracer.off():
            return NON_RECORDING  # token stays None: __exit__ has nothing to undo
        span = self._span = start(self._name, self._span_type)
        self._token = current_span.set(span)
        self._otel = _otel.enter(span)
        with guard("start_span enter"):
            if self._inputs is not None:
                span.set_inputs(self._inputs)
            if self._attributes:
                span.set_attributes(self._attributes)
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is None:
            return
        span = self._span
        _otel.leave(self._otel)
        with guard("start_span exit"):
            if self._token is not None:
                try:
                    current_span.reset(self._token)
                except ValueError:  # exited in another context (e.g. across tasks)
                    current_span.set(None)
            finish(span, exc)


def finish(span: Span, exc: BaseException | None) -> None:
    """End `span`: `ERROR` with the exception if one is given, else `OK` unless set."""
    if exc is not None and not isinstance(exc, GeneratorExit):
        span.record_exception(exc)
    elif span.status == SpanStatus.UNSET:
        span.set_status(SpanStatus.OK)
    span.end()


def get_current_span() -> Span | None:
    """The span active in this context, or None outside any span."""
    return current_span.get()


def get_tracing_headers() -> dict[str, str]:
    """W3C trace context headers naming the current span, for your own HTTP calls.

    Returns `{"traceparent": "00-<trace id>-<span id>-01"}`, or an empty dict
    outside a recorded span (under a remote caller that did not record its span:
    the caller's `traceparent`, flags `00`, so that the next service drops it too).
    A service that calls `tracekit.continue_trace` (or runs behind `tracekit.wsgi`/
    `tracekit.asgi` middleware) with these headers records its spans in the same
    trace, under this span.

    Example:
        with tracekit.start_span("ask gateway"):
            request = urllib.request.Request(url, headers=tracekit.get_tracing_headers())
    """
    return _propagation.tracing_headers()


def continue_trace(headers: Mapping[str, Any] | Any) -> AbstractContextManager[None]:
    """Continue a trace started in another process (an incoming request).

    Spans started inside the block that have no local parent join the trace
    named by `headers["traceparent"]` (looked up case-insensitively; a mapping
    or a list of (name, value) pairs, str or bytes), as children of the remote
    span. A missing or invalid `traceparent` is ignored: the block runs as it
    would have anyway (a new trace). Never raises.

    Example:
        with tracekit.continue_trace(request.headers):
            handle(request)
    """
    return _propagation.continue_trace(headers)


def get_last_trace_id() -> str | None:
    """The id of the trace whose root span ended most recently in this process."""
    return _state.buffer.last_trace_id


def update_current_trace(
    tags: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    session_id: str | None = None,
    user_id: str | None = None,
) -> None:
    """Add tags and metadata to the trace of the current span.

    `session_id` and `user_id` are stored in the metadata under those keys
    (exporters map them to what their backend reads).
    """
    span = current_span.get()
    if span is None:
        warn_limited("update-no-trace", "tracekit.update_current_trace() called outside a trace")
        return
    if not span.is_recording:
        return
    with guard("update_current_trace"):
        span._trace.annotate(tags, metadata, session_id, user_id)


def flush(timeout: float | None = None) -> bool:
    """Export every trace finished so far. Returns False if `timeout` passed first.

    Call it at the end of a serverless handler, a notebook cell or before
    `os._exit()`; a normal interpreter exit flushes on its own. Feedback logged
    with `tracekit.log_feedback` is delivered too, in what time is left.
    """
    import sys
    import time

    began = time.monotonic()
    done = _state.flush(timeout)
    feedback = sys.modules.get("tracekit._feedback")  # only if feedback was ever logged
    if feedback is not None:
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - began))
        done = feedback.flush(left) and done
    return done


def shutdown() -> None:
    """Flush within `TRACEKIT_SHUTDOWN_TIMEOUT` and stop exporting (runs at exit anyway).

    Spans still open are ended and exported marked incomplete.
    """
    _state.at_exit()


def get_stats() -> dict[str, int]:
    """Counts of what tracekit dropped, by reason, of what it kept on disk, and two gauges.

    A key appears once its count is above zero (the gauges always). Losses
    (the first of each kind also logs one warning):

    - `spans_per_trace`: spans not recorded, their trace had max_spans_per_trace.
    - `in_flight_traces`: traces not recorded, max_in_flight_traces were open.
    - `queue_full`: finished traces dropped because the export queue
      (max_queued_spans) was full and they could not be written to disk either.
    - `export_failed`: traces a destination did not take and that were not kept.
    - `not_exported_at_exit`: traces neither delivered nor kept when
      TRACEKIT_SHUTDOWN_TIMEOUT ran out.
    - `spool_full`: traces dropped because a spool was full or not writable.
    - `set_aside`: traces a destination refused on their own, kept beside the
      spool (`*.rejected`), not sent again.
    - `serialize_failed`: finished traces that could not be turned into a record.
    - `force_ended_spans`: spans tracekit ended itself (not a loss of data).
    - `feedback_spool_full`, `feedback_export_failed`: the same for feedback
      and expectations (`log_feedback`, `log_expectation`).

    Not losses: `spooled` (traces that waited in a remote destination's
    spool), `delivered_from_spool` (spooled traces delivered later), `spilled`
    (traces a burst pushed out of the export queue onto disk),
    `feedback_spooled` and `feedback_delivered_from_spool` (the same for
    feedback). Gauges: `traces_in_flight` (started, not finished) and
    `traces_queued` (finished, not yet exported). `tracekit._stats.REASONS`
    and `EVENTS` describe each key in a sentence.
    """
    stats = _stats.snapshot()
    stats.update(_stats.events())
    stats["traces_in_flight"] = _state.buffer.in_flight()
    current = _state._pipeline
    stats["traces_queued"] = current.queued() if current is not None else 0
    return stats


def configure(
    *,
    enabled: bool | None = None,
    tracking_uri: str | Sequence[str] | None = None,
    experiment_id: str | None = None,
    experiment_name: str | None = None,
    sampling_ratio: float | None = None,
    capture_content: bool | None = None,
    service_name: str | None = None,
    span_processors: Sequence[Callable[[dict[str, Any]], Any]] | None = None,
    exporter: Any = None,
    export_interval: float | None = None,
    shutdown_timeout: float | None = None,
    spool_dir: str | None = None,
    spool_max_mb: float | None = None,
    export_timeout: float | None = None,
    propagate_context_to_threads: bool | None = None,
    propagate_context: bool | None = None,
    otel_context: bool | None = None,
    prices: Mapping[str, Mapping[str, float]] | str | os.PathLike[str] | None = None,
    **limits: float,
) -> Config:
    """Configure tracekit; explicit arguments beat environment variables.

    Arguments left as None keep their current value. Calling it again merges
    over the previous call. Traces already finished are flushed to the old
    destination first.

    Args:
        enabled: master switch (`TRACEKIT_ENABLED`).
        tracking_uri: destination(s) (`TRACEKIT_TRACKING_URI`): a directory or
            `file://DIR`, `console`, `memory`, `http(s)://HOST[:PORT]` (an
            MLflow-compatible tracking server), `otlp` or
            `otlp+http(s)://HOST:PORT[/PATH]`, `otel` (the app's own
            OpenTelemetry TracerProvider); a list or comma-separated string
            for several.
        experiment_id: experiment on a tracking server.
        experiment_name: experiment on a tracking server, created if missing.
        sampling_ratio: fraction of traces recorded, decided at the root.
        capture_content: record inputs and outputs (default True).
        service_name: resource `service.name`.
        span_processors: callables that receive each span record (a dict) on
            the export worker and may modify it in place or return a new one.
        exporter: an exporter object (or list of them), or a
            `"package.module:factory"` string.
        export_interval: seconds between background exports.
        shutdown_timeout: seconds the exit flush may take.
        spool_dir: where traces a remote destination could not take are kept
            until it can (`TRACEKIT_SPOOL_DIR`, default `./.tracekit/spool`).
        spool_max_mb: the spool's bound per destination (`TRACEKIT_SPOOL_MAX_MB`).
        export_timeout: seconds per request to a remote destination
            (`TRACEKIT_EXPORT_TIMEOUT`).
        propagate_context_to_threads: carry the current span into thread pools.
        propagate_context: send a W3C `traceparent` naming the LLM span with
            each traced SDK request (`TRACEKIT_PROPAGATE_CONTEXT`, default True).
        otel_context: tracekit and OpenTelemetry spans nest in one trace either
            way (`TRACEKIT_OTEL_CONTEXT`, default True): a span started while an
            OpenTelemetry span is recording is its child, and OpenTelemetry sees
            the current tracekit span as its current span.
        prices: prices for model or endpoint names the price database does not
            know, or overrides: `{"my-endpoint": {"input_mtok": 1.0,
            "output_mtok": 3.0}}` in USD per million tokens (also
            `cache_read_mtok`, `cache_write_mtok`), or the path of a JSON/TOML
            file of them (`TRACEKIT_PRICES`). See docs/cost.md.
        **limits: `max_spans_per_trace`, `max_in_flight_traces`,
            `max_queued_spans`, `export_batch_spans`, `max_value_chars`,
            `max_trace_chars`, `orphan_timeout`.

    Example:
        tracekit.configure(tracking_uri="console", sampling_ratio=0.1)
    """
    unknown = set(limits) - LIMITS
    if unknown:
        raise TypeError(f"tracekit.configure() got unexpected keyword arguments {sorted(unknown)}")
    overrides: dict[str, Any] = dict(
        enabled=enabled,
        tracking_uri=tracking_uri,
        experiment_id=experiment_id,
        experiment_name=experiment_name,
        sampling_ratio=sampling_ratio,
        capture_content=capture_content,
        service_name=service_name,
        span_processors=span_processors,
        export_interval=export_interval,
        shutdown_timeout=shutdown_timeout,
        spool_dir=spool_dir,
        spool_max_mb=spool_max_mb,
        export_timeout=export_timeout,
        propagate_context_to_threads=propagate_context_to_threads,
        propagate_context=propagate_context,
        otel_context=otel_context,
        **limits,
    )
    if isinstance(prices, (str, os.PathLike)):
        overrides["prices_file"] = os.fspath(prices)
    else:
        overrides["prices"] = prices
    if isinstance(exporter, str):
        overrides["exporter_factory"] = exporter
    elif exporter is not None:
        overrides["exporters"] = exporter if isinstance(exporter, (list, tuple)) else (exporter,)
    return _state.configure(overrides)
