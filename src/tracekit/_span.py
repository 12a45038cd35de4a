"""Spans: what one operation did. The hot path only stores references and times."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tracekit import _runtime

if TYPE_CHECKING:
    from tracekit._buffer import TraceState


class SpanType:
    """Span types (MLflow-compatible names, so MLflow's UI renders them)."""

    LLM = "LLM"
    CHAT_MODEL = "CHAT_MODEL"
    EMBEDDING = "EMBEDDING"
    CHAIN = "CHAIN"
    AGENT = "AGENT"
    TOOL = "TOOL"
    RETRIEVER = "RETRIEVER"
    RERANKER = "RERANKER"
    PARSER = "PARSER"
    UNKNOWN = "UNKNOWN"


class SpanStatus:
    """Status codes of a span and of a trace."""

    OK = "OK"
    ERROR = "ERROR"
    UNSET = "UNSET"


def _snapshot(value: Any) -> Any:
    """Shallow copy of containers the app may mutate after the call."""
    if type(value) is dict:
        return {k: (v.copy() if type(v) in (list, dict) else v) for k, v in value.items()}
    if type(value) is list:
        return value.copy()
    return value


class Span:
    """One operation in a trace.

    Created by `tracekit.start_span`, `@tracekit.trace` and the integrations;
    do not instantiate directly. Setters are ignored once the span has ended.
    """

    __slots__ = (
        "_trace",
        "attributes",
        "deferred",
        "end_time_ns",
        "events",
        "inputs",
        "name",
        "outputs",
        "parent_id",
        "span_id",
        "span_type",
        "start_time_ns",
        "status",
        "status_message",
        "token_usage",
    )

    def __init__(
        self,
        trace: TraceState,
        span_id: str,
        parent_id: str | None,
        name: str,
        span_type: str,
        start_time_ns: int,
    ) -> None:
        self._trace = trace
        self.span_id = span_id
        self.parent_id = parent_id
        self.name = name
        self.span_type = span_type
        self.start_time_ns = start_time_ns
        self.end_time_ns: int | None = None
        self.status = SpanStatus.UNSET
        self.status_message = ""
        self.inputs: Any = None
        self.outputs: Any = None
        self.attributes: dict[str, Any] | None = None
        self.events: list[dict[str, Any]] | None = None
        self.token_usage: dict[str, int] | None = None
        # What `defer` was given: one callable (the common case: an SDK call's mapping,
        # without a list to hold it) or several in a list, in order.
        self.deferred: Callable[[], None] | list[Callable[[], None]] | None = None

    @property
    def trace_id(self) -> str:
        """The 32-hex-digit id of the trace this span belongs to."""
        return self._trace.trace_id

    @property
    def is_recording(self) -> bool:
        """False for spans that are sampled out, disabled or dropped."""
        return True

    @property
    def ended(self) -> bool:
        return self.end_time_ns is not None

    def set_inputs(self, inputs: Any) -> None:
        """Record the operation's inputs (ignored when content capture is off)."""
        if self.end_time_ns is None and self._trace.capture_content:
            self.inputs = _snapshot(inputs)

    def set_outputs(self, outputs: Any) -> None:
        """Record the operation's outputs (ignored when content capture is off)."""
        if self.end_time_ns is None and self._trace.capture_content:
            self.outputs = _snapshot(outputs)

    def set_attribute(self, key: str, value: Any) -> None:
        """Set one attribute (serialized to JSON on export)."""
        if self.end_time_ns is None:
            if self.attributes is None:
                self.attributes = {}
            self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Set several attributes at once."""
        if self.end_time_ns is None:
            if self.attributes is None:
                self.attributes = {}
            self.attributes.update(attributes)

    def set_token_usage(self, usage: Mapping[str, int]) -> None:
        """Record normalized token usage (`input_tokens`, `output_tokens`, ...)."""
        if self.end_time_ns is None:
            self.token_usage = dict(usage)

    def set_status(self, status: str, message: str = "") -> None:
        """Set `OK`, `ERROR` (with a message) or `UNSET`."""
        if self.end_time_ns is None:
            self.status = status
            self.status_message = message

    def add_event(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        timestamp_ns: int | None = None,
    ) -> None:
        """Add a timestamped event to the span."""
        if self.end_time_ns is None:
            event = {
                "name": name,
                "timestamp_ns": _runtime.clock() if timestamp_ns is None else timestamp_ns,
                "attributes": dict(attributes) if attributes else {},
            }
            if self.events is None:
                self.events = []
            self.events.append(event)

    def record_exception(self, exc: BaseException, *, set_status: bool = True) -> None:
        """Add an `exception` event and, by default, mark the span `ERROR`."""
        if self.end_time_ns is not None:
            return
        import traceback

        self.add_event(
            "exception",
            {
                "exception.type": type(exc).__qualname__,
                "exception.message": _safe_str(exc),
                "exception.stacktrace": "".join(
                    traceback.format_exception(type(exc), exc, exc.__traceback__)
                ),
            },
        )
        if set_status:
            self.set_status(SpanStatus.ERROR, f"{type(exc).__name__}: {_safe_str(exc)}")

    def defer(self, fill: Callable[[], None]) -> None:
        """Run `fill` on the export worker, just before the span is serialized.

        For integrations: mapping a response or a stream's chunks into outputs,
        attributes and usage is work the traced call need not wait for. `fill`
        may use the setters although the span has ended by then.
        """
        deferred = self.deferred
        if deferred is None:
            self.deferred = fill
        elif isinstance(deferred, list):
            deferred.append(fill)
        else:
            self.deferred = [deferred, fill]

    def end(self, end_time_ns: int | None = None) -> None:
        """End the span (idempotent; later calls are ignored). The status is kept
        as set: `start_span` and `@trace` set `OK` on a normal exit."""
        if self.end_time_ns is None:
            self._trace.end_span(self, _runtime.clock() if end_time_ns is None else end_time_ns)

    def __repr__(self) -> str:
        return f"<Span {self.name!r} {self.span_type} {self.trace_id}/{self.span_id}>"


class NonRecordingSpan(Span):
    """Stands in for a span that is not recorded (disabled, sampled out, dropped).

    It keeps nesting intact: children of a non-recording span are not recorded
    either, and every setter is a no-op.
    """

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(None, "0" * 16, None, "", SpanType.UNKNOWN, 0)  # type: ignore[arg-type]

    @property
    def trace_id(self) -> str:
        return "0" * 32

    @property
    def is_recording(self) -> bool:
        return False

    def set_inputs(self, inputs: Any) -> None:
        pass

    def set_outputs(self, outputs: Any) -> None:
        pass

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        pass

    def set_token_usage(self, usage: Mapping[str, int]) -> None:
        pass

    def set_status(self, status: str, message: str = "") -> None:
        pass

    def add_event(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        timestamp_ns: int | None = None,
    ) -> None:
        pass

    def record_exception(self, exc: BaseException, *, set_status: bool = True) -> None:
        pass

    def defer(self, fill: Callable[[], None]) -> None:
        pass

    def end(self, end_time_ns: int | None = None) -> None:
        pass

    def __repr__(self) -> str:
        return "<NonRecordingSpan>"


NON_RECORDING = NonRecordingSpan()


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__}: str() failed>"
