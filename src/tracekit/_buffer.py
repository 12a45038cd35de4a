"""The trace buffer: collects a trace's spans and emits it once all have ended.

A trace is emitted when its root and every child have ended. A child still
open `orphan_timeout` seconds after its root ended is force-ended and the
trace is emitted anyway, marked incomplete. Traces in flight and spans per
trace are bounded; every drop is counted (`tracekit._stats`).

A *fragment* is the part of a trace recorded by one buffer generation: spans
started under a parent from another process (a fork, a remote `traceparent`
or an OpenTelemetry span) or under a trace already emitted get a new `TraceState` with
the same trace id whose root has a `parent_id`. Readers merge fragments.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tracekit import _runtime, _stats
from tracekit._span import Span

if TYPE_CHECKING:
    from tracekit._config import Config


def pack(record: dict[str, Any]) -> dict[str, Any] | bytes:
    """A record as JSON bytes, which `unpack` turns back into an equal record; by
    pydantic-core's serializer (in C: ~10 µs for a 2.5 KB record) when the app has
    loaded it (every SDK tracekit instruments has), never imported here. Records hold
    only JSON values (`_serialize`); one that does not pack (a span processor's own
    object, a lone surrogate) and an empty one (a marker compared by identity) stay
    as they are."""
    core = sys.modules.get("pydantic_core")
    if not record or core is None:
        return record
    try:
        packed: bytes = core.to_json(record)
    except Exception:  # not JSON after all: kept as a dict
        return record
    return packed


def unpack(packed: bytes) -> dict[str, Any]:
    """The record `pack` packed."""
    # Strings are not cached (only keys): ids and timestamps never repeat, and
    # pydantic-core would keep up to 16,384 of them in its global cache.
    record: dict[str, Any] = sys.modules["pydantic_core"].from_json(packed, cache_strings="keys")
    return record


# What a released trace holds in place of its own span list and lock, shared: a trace
# is released once closed, and a closed trace takes no span (the lock then guards only
# checks that find it closed). Its own list and lock were two more objects the garbage
# collector tracks for every trace waiting for its batch.
_RELEASED_SPANS: list[Span] = []
_RELEASED_LOCK = threading.Lock()


class TraceState:
    """A trace (or fragment) being recorded in this process."""

    __slots__ = (
        "_buffer",
        "capture_content",
        "closed",
        "deadline",
        "dropped_spans",
        "generation",
        "lock",
        "max_spans",
        "metadata",
        "open",
        "orphan_timeout",
        "record",
        "root",
        "root_ended",
        "size",
        "spans",
        "tags",
        "trace_id",
    )

    def __init__(self, buffer: TraceBuffer, trace_id: str, config: Config) -> None:
        self._buffer = buffer
        self.trace_id = trace_id
        self.spans: list[Span] = []
        self.size = 0  # spans when finished: what the export queue counts
        self.open = 0
        self.root: Span | None = None
        self.root_ended = False
        self.closed = False
        self.lock = threading.Lock()
        self.tags: dict[str, str] = {}
        self.metadata: dict[str, Any] = {}
        self.dropped_spans = 0
        self.generation = buffer.generation
        self.capture_content = config.capture_content
        self.max_spans = config.max_spans_per_trace
        self.orphan_timeout = config.orphan_timeout
        self.deadline = 0.0
        # Its export record, made by the export worker soon after the trace finished
        # (`digested`), while the trace waits in the queue for its batch.
        self.record: dict[str, Any] | bytes | None = None

    def add(self, span: Span) -> bool:
        """Register a started span; False when the trace is closed or full."""
        with self.lock:
            if self.closed or self.generation != self._buffer.generation:
                return False  # emitted already, or inherited across fork: new fragment
            if len(self.spans) >= self.max_spans:
                self.dropped_spans += 1
                full = True
            else:
                full = False
                self.spans.append(span)
                self.open += 1
                if self.root is None:
                    self.root = span
        if full:
            _stats.count("spans_per_trace")
        return not full

    def end_span(self, span: Span, end_time_ns: int) -> None:
        if self.generation != self._buffer.generation:
            return  # inherited across fork: the parent process owns this trace
        with self.lock:
            if span.end_time_ns is not None:
                return
            span.end_time_ns = end_time_ns
            self.open -= 1
            is_root = span is self.root
            if is_root:
                self.root_ended = True
            finished = self.root_ended and self.open == 0 and not self.closed
            if finished:
                self.closed = True
        if is_root:
            self._buffer.last_trace_id = self.trace_id
        if finished:
            self._buffer.finish(self)
        elif is_root:
            self._buffer.wait_for_children(self)

    def annotate(
        self,
        tags: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        session_id: str | None = None,
        user_id: str | None = None,
    ) -> None:
        """Add tags and metadata (`tracekit.update_current_trace`); serialized on export."""
        with self.lock:
            if tags:
                self.tags.update(tags)
            if metadata:
                self.metadata.update(metadata)
            if session_id is not None:
                self.metadata["session_id"] = session_id
            if user_id is not None:
                self.metadata["user_id"] = user_id

    def force_end(self, reason: str) -> int:
        """End every open span now; returns how many were open. Caller emits."""
        now = _runtime.clock()
        forced = 0
        with self.lock:
            if self.closed:
                return -1
            self.closed = True
            for span in self.spans:
                if span.end_time_ns is None:
                    span.set_attribute("tracekit.force_ended", reason)
                    span.end_time_ns = now
                    forced += 1
            self.open = 0
        if forced:
            self.metadata["tracekit.incomplete"] = f"{forced} span(s) force-ended: {reason}"
        return forced

    def digested(self, record: dict[str, Any]) -> None:
        """Keep the trace's record and let go of its spans, and so of what they
        referenced (the SDK's request and response objects, a stream's chunks), while
        it waits for its batch.

        Kept until the export, those objects would outlive two young-generation passes
        of the garbage collector and be promoted to the old one, whose growth is what
        triggers full passes on whichever thread allocates next: usually a caller. The
        record itself waits packed as JSON (`pack`): one bytes object the collector
        does not track, instead of the dozens of dicts and lists of a record. The spans
        go too (the queue counts `size`): a trace waiting up to `export_interval` with
        its span list and spans (each pointing back at the trace) took four or more
        tracked objects per trace into the old generation, enough at a few hundred
        calls a second for a full pass every few thousand calls (~200 ms each in a
        process that has loaded the SDKs). A span the app still holds is emptied of
        its content."""
        self.record = pack(record)
        for span in self.spans:
            span.inputs = span.outputs = span.attributes = None
            span.events = span.deferred = None
            span.token_usage = None
        self.release()

    def take_record(self) -> dict[str, Any] | None:
        """The record `digested` kept (unpacked), or None when there is none."""
        record = self.record
        if isinstance(record, bytes):
            return unpack(record)
        return record

    def release(self) -> None:
        """Drop the span list and the trace's own lock once digested, serialized or
        dropped (the trace is closed by then).

        Spans point at their trace and the trace at its spans; cutting the cycle
        lets reference counting free them at once instead of the cyclic garbage
        collector, whose full passes would otherwise slow the traced calls.
        """
        self.spans = _RELEASED_SPANS
        self.root = None
        self.lock = _RELEASED_LOCK


class TraceBuffer:
    """Traces in flight, keyed by identity, bounded in number."""

    def __init__(
        self,
        on_finished: Callable[[TraceState], None],
        on_waiting: Callable[[], None] = lambda: None,
    ) -> None:
        self._on_finished = on_finished
        self._on_waiting = on_waiting
        self._lock = threading.Lock()
        self._in_flight: dict[int, TraceState] = {}
        self._waiting: dict[int, TraceState] = {}
        self.generation = 0
        self.last_trace_id: str | None = None

    def new_trace(self, trace_id: str, config: Config) -> TraceState | None:
        """A new trace (or fragment) in flight; None when too many are (counted)."""
        trace = TraceState(self, trace_id, config)
        return trace if self._admit(trace, config) else None

    def start_root(
        self, trace_id: str, span_id: str, name: str, span_type: str, config: Config
    ) -> Span | None:
        """A new trace with its root span started now, in one step (the common root:
        no remote parent). Nothing else sees the trace before it is in flight, so the
        root is added without the trace's lock. None when too many traces are in
        flight, or no span fits in one (counted)."""
        if config.max_spans_per_trace < 1:
            _stats.count("spans_per_trace")
            return None
        trace = TraceState(self, trace_id, config)
        span = Span(trace, span_id, None, name, span_type, _runtime.clock())
        trace.spans.append(span)
        trace.open = 1
        trace.root = span
        return span if self._admit(trace, config) else None

    def _admit(self, trace: TraceState, config: Config) -> bool:
        """Put `trace` in flight; False when too many are (counted)."""
        with self._lock:
            full = len(self._in_flight) >= config.max_in_flight_traces
            if not full:
                self._in_flight[id(trace)] = trace
        if full:
            _stats.count("in_flight_traces")
            return False
        return True

    def add_to_fragment(self, span: Span, config: Config) -> bool:
        """Record `span`, which its parent's trace refused, in a new fragment of that
        trace when it was already emitted or belongs to the process this one was
        forked from. False when it cannot be recorded (the trace was full)."""
        trace = span._trace
        if not (trace.closed or trace.generation != self.generation):
            return False
        fragment = self.new_trace(trace.trace_id, config)
        if fragment is None:
            return False
        span._trace = fragment
        return fragment.add(span)

    def finish(self, trace: TraceState) -> None:
        trace.size = len(trace.spans)
        with self._lock:
            self._in_flight.pop(id(trace), None)
            self._waiting.pop(id(trace), None)
        self._on_finished(trace)

    def wait_for_children(self, trace: TraceState) -> None:
        trace.deadline = time.monotonic() + trace.orphan_timeout
        with self._lock:
            if not trace.closed:
                self._waiting[id(trace)] = trace
        self._on_waiting()  # the sweep runs on the export worker: make sure it runs

    def sweep(self, now: float | None = None) -> int:
        """Force-end traces whose children outlived the grace period; returns count."""
        now = time.monotonic() if now is None else now
        with self._lock:
            expired = [t for t in self._waiting.values() if t.deadline <= now]
        for trace in expired:
            self._force(trace, "still open after the root span ended")
        return len(expired)

    def force_end_all(self, reason: str) -> int:
        """At shutdown: end and emit every trace in flight (spans still open are marked)."""
        with self._lock:
            traces = list(self._in_flight.values())
        for trace in traces:
            self._force(trace, reason)
        return len(traces)

    def _force(self, trace: TraceState, reason: str) -> None:
        forced = trace.force_end(reason)
        if forced < 0:
            return  # finished meanwhile
        if forced:
            _stats.count("force_ended_spans", forced)
        self.finish(trace)

    def discard_all(self) -> int:
        """Forget every trace in flight without exporting it (test isolation)."""
        with self._lock:
            traces = list(self._in_flight.values())
            self._in_flight.clear()
            self._waiting.clear()
        for trace in traces:
            with trace.lock:
                trace.closed = True
        return len(traces)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = {}
        self._waiting = {}
        self.generation += 1


__all__ = ["TraceBuffer", "TraceState"]
