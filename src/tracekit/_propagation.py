"""One trace across processes: W3C `traceparent` in and out.

Out: `tracing_headers()` names the current span (the integrations send it with
each SDK request, so a gateway that traces server-side joins the trace). In:
`continue_trace(headers)` makes root spans started inside nest under the
remote span, as a fragment of the remote trace. Without a remote parent, an
active OpenTelemetry span (only if the app imported OpenTelemetry itself)
plays the same role.

Sampling follows the parent, as OpenTelemetry's default sampler does: a remote
span that was recorded (trace-flags `01`) has its children here recorded
whatever the local sampling ratio; one that was not (`00`) has nothing here
recorded, and the calls made from here pass that decision on.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from tracekit._context import current_span, remote_parent
from tracekit._span import NON_RECORDING

if TYPE_CHECKING:
    from tracekit._config import Config

TRACEPARENT = "traceparent"
_HEADER = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


# (trace id, span id) of a remote span that was not recorded (`traceparent` flags
# `00`), inside `continue_trace`: nothing is recorded there, and the headers sent
# from there say so.
_unsampled: ContextVar[tuple[str, str] | None] = ContextVar(
    "tracekit_unsampled_parent", default=None
)


def format_traceparent(trace_id: str, span_id: str, sampled: bool = True) -> str:
    """`00-<trace id>-<span id>-01` (`-00` when the span is not recorded)."""
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def parse(value: Any) -> tuple[str, str, bool] | None:
    """(trace id, parent span id, sampled) of a valid `traceparent` value, else None."""
    if not isinstance(value, str):
        return None
    match = _HEADER.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):  # version 00 has exactly four fields
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)  # bit 0 is `sampled`


def parse_traceparent(value: Any) -> tuple[str, str] | None:
    """(trace id, parent span id) of a valid `traceparent` value, else None."""
    parsed = parse(value)
    return None if parsed is None else parsed[:2]


def header(headers: Any, name: str = TRACEPARENT) -> Any:
    """The value of header `name` in a mapping or a list of pairs, case-insensitively."""
    if headers is None:
        return None
    # A dict first: an ABC check costs a Python-level call, and every traced call asks.
    items = headers.items() if type(headers) is dict or isinstance(headers, Mapping) else headers
    for key, value in items:
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        if isinstance(key, str) and key.lower() == name:
            return value.decode("latin-1") if isinstance(value, bytes) else value
    return None


def tracing_headers() -> dict[str, str]:
    """`{"traceparent": ...}` naming the current span; empty outside a recorded span,
    except under a remote parent that was not recorded (whose decision it passes on)."""
    span = current_span.get()
    if span is not None and span.is_recording:
        return {TRACEPARENT: format_traceparent(span.trace_id, span.span_id)}
    unsampled = _unsampled.get()
    if unsampled is None:
        return {}
    return {TRACEPARENT: format_traceparent(*unsampled, sampled=False)}


def unsampled_traceparent() -> str | None:
    """The `traceparent` (flags 00) of a remote caller that did not record its span,
    when the code runs under one; else None. Cheap: one context variable read."""
    unsampled = _unsampled.get()
    return None if unsampled is None else format_traceparent(*unsampled, sampled=False)


def remote_sampled(headers: Any) -> bool | None:
    """The sampled flag of the `traceparent` in `headers`; None without a valid one."""
    try:
        remote = parse(header(headers))
    except Exception:  # headers of an unexpected shape
        return None
    return None if remote is None else remote[2]


@contextmanager
def continue_trace(headers: Any) -> Iterator[None]:
    """Root spans started inside join the trace named by `headers["traceparent"]`,
    and are recorded if and only if the remote span was (its sampled flag).

    Without a valid `traceparent` the block runs as it would have anyway.
    """
    try:
        remote = parse(header(headers))
    except Exception:  # headers of an unexpected shape: start a new trace
        remote = None
    if remote is None:
        yield
        return
    trace_id, span_id, sampled = remote
    token = remote_parent.set((trace_id, span_id) if sampled else None)
    unsampled_token = _unsampled.set(None if sampled else (trace_id, span_id))
    # The remote span is the parent, not a local one; under one that was not
    # recorded, a non-recording parent keeps everything inside unrecorded.
    span_token = current_span.set(None if sampled else NON_RECORDING)
    try:
        yield
    finally:
        _reset(current_span, span_token)
        _reset(_unsampled, unsampled_token)
        _reset(remote_parent, token)


def _reset(var: ContextVar[Any], token: Token[Any]) -> None:
    try:
        var.reset(token)
    except ValueError:  # exited in another context (e.g. across tasks)
        var.set(None)


def _no_recording_spans(otel: Any) -> bool:
    """OpenTelemetry's API is loaded (anthropic 2.x imports it) but nothing in the
    process can start a recording span: no TracerProvider is registered and the SDK,
    whose providers record even unregistered, is not loaded. Then the lookup of its
    current span (five calls into cold code on every root span) is skipped."""
    return (
        getattr(otel, "_TRACER_PROVIDER", True) is None
        and "opentelemetry.sdk.trace" not in sys.modules
    )


def incoming(config: Config) -> tuple[str, str] | None:
    """The remote parent of a new root span: `continue_trace`'s, else OpenTelemetry's."""
    remote = remote_parent.get()
    if remote is not None or not config.otel_context:
        return remote
    otel = sys.modules.get("opentelemetry.trace")  # never imported by tracekit
    if otel is None or _no_recording_spans(otel):
        return None
    try:
        # Nothing in OpenTelemetry's context, nothing to join: one public call instead of
        # the five of `get_current_span` (anthropic 2.x loads the SDK, so every root
        # span of a process that imports it asks).
        if not sys.modules["opentelemetry.context"].get_current():
            return None
        span = otel.get_current_span()
        if not span.is_recording():
            return None
        context = span.get_span_context()
        if not context.is_valid:
            return None
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"
    except Exception:  # an OpenTelemetry we do not understand
        return None
