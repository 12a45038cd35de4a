"""OpenTelemetry in the same process: one trace, nested either way.

Only when OpenTelemetry is loaded (the app, or a library such as anthropic 2.x,
imported `opentelemetry.trace`; tracekit never imports it here) and
`otel_context` is on:

- while a tracekit span is current, OpenTelemetry's current span is a
  non-recording stand-in carrying that span's ids (`enter`/`leave`), so the
  spans the app or an instrumented library starts there are its children;
- a tracekit span started while an OpenTelemetry span that was started inside
  the current tracekit span is current nests under that OpenTelemetry span
  (`foreign_parent`); a tracekit root span under an OpenTelemetry span joins
  its trace (`_propagation.incoming`).

Otherwise (not loaded, or loaded with no TracerProvider registered, as anthropic 2.x
does on its own) each function costs a `sys.modules` lookup and an attribute read.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from tracekit import _state
from tracekit._guard import internal_error

if TYPE_CHECKING:
    from tracekit._span import Span

_MODULE = "opentelemetry.trace"


def _nothing_to_nest(otel: Any) -> bool:
    """No TracerProvider is registered: OpenTelemetry starts no recording span, so there
    is nothing to nest either way. Read from the API's global (private, ~50 ns) rather
    than `get_tracer_provider()`, which costs an environment lookup per call; where the
    global is missing (another OpenTelemetry version), assume a provider."""
    return getattr(otel, "_TRACER_PROVIDER", True) is None


_standin_type: Any = None  # NonRecordingSpan subclass marking tracekit's stand-ins


_sampled: Any = None
# A key of OpenTelemetry's context: the id of the tracekit span `enter` made current.
# OpenTelemetry spans started under it copy the context, key included.
_entered: Any = None


def _standin(otel: Any) -> Any:
    global _standin_type, _sampled, _entered
    if _standin_type is None:
        _sampled = otel.TraceFlags(otel.TraceFlags.SAMPLED)
        _entered = sys.modules["opentelemetry.context"].create_key("tracekit-entered-span")
        _standin_type = type("TracekitSpan", (otel.NonRecordingSpan,), {"__slots__": ()})
    return _standin_type


def enter(span: Span) -> Any:
    """Make `span` OpenTelemetry's current span too; the token for `leave`, or None."""
    otel = sys.modules.get(_MODULE)
    if otel is None or not span.is_recording or _nothing_to_nest(otel):
        return None
    try:
        if not _state.config().otel_context:
            return None
        standin = _standin(otel)
        context = otel.SpanContext(int(span.trace_id, 16), int(span.span_id, 16), False, _sampled)
        api = sys.modules["opentelemetry.context"]
        return api.attach(
            api.set_value(_entered, span.span_id, otel.set_span_in_context(standin(context)))
        )
    except Exception as exc:
        internal_error("opentelemetry context enter", exc)
        return None


def leave(token: Any) -> None:
    """Undo `enter` (a None token: nothing to undo)."""
    if token is None:
        return
    try:
        sys.modules["opentelemetry.context"].detach(token)
    except Exception as exc:
        internal_error("opentelemetry context leave", exc)


def foreign_parent(current: Span) -> str | None:
    """The span id of the OpenTelemetry span that is current now, when it was started
    inside `current` (the current tracekit span): the parent of a span started here.
    None when OpenTelemetry's current span is `current`'s own stand-in, or unrelated."""
    otel = sys.modules.get(_MODULE)
    if otel is None or not current.is_recording or _nothing_to_nest(otel):
        return None
    try:
        if not _state.config().otel_context:
            return None
        span = otel.get_current_span()  # without a TracerProvider, never recording
        if isinstance(span, _standin(otel)) or not span.is_recording():
            return None
        # A recording span in place of the stand-in `enter` made current for `current`
        # was started inside it. Not so when `current` was made current without
        # `enter` (a LangChain run): the OpenTelemetry span may be its ancestor.
        if sys.modules["opentelemetry.context"].get_value(_entered) != current.span_id:
            return None
        context = span.get_span_context()
        return f"{context.span_id:016x}" if context.is_valid else None
    except Exception as exc:
        internal_error("opentelemetry parent", exc)
        return None
