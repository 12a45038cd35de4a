"""Turn finished traces into `tracekit.trace/1` records (runs on the export worker).

The deferred mapping of the integrations runs first (`fill_deferred`); then every
span's values go through one `_walk._Walk` per trace, which makes anything the
application passed JSON-safe and truncates what is over its limits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tracekit._guard import internal_error
from tracekit._walk import _Walk, name

if TYPE_CHECKING:
    from tracekit._buffer import TraceState
    from tracekit._span import Span

SCHEMA = "tracekit.trace/1"


def fill_deferred(trace: TraceState) -> None:
    """Run the deferred mapping (see `Span.defer`) of the trace's spans, each with its
    setters open; a mapping that fails is reported and the span recorded without it."""
    for span in trace.spans:
        if span.deferred is not None:
            _fill(span)


def _fill(span: Span) -> None:
    deferred, span.deferred = span.deferred, None
    fills = deferred if isinstance(deferred, list) else [deferred] if deferred is not None else []
    end, span.end_time_ns = span.end_time_ns, None
    try:
        for fill in fills:
            try:
                fill()
            except Exception as exc:
                internal_error(f"deferred mapping of {span.name!r}", exc)
    finally:
        span.end_time_ns = end


def sum_usage(spans: list[Span]) -> dict[str, int] | None:
    """Add up span token usage, skipping spans whose ancestor already carries usage.

    The walk up a span's ancestors stops after as many steps as there are spans: a
    malformed trace whose parent links form a cycle (no span of tracekit's own does)
    cannot loop."""
    by_id = {s.span_id: s for s in spans}
    total: dict[str, int] = {}
    for span in spans:
        if not span.token_usage:
            continue
        parent = by_id.get(span.parent_id) if span.parent_id else None
        counted_above = False
        steps = len(spans)
        while parent is not None and steps:
            if parent.token_usage:
                counted_above = True
                break
            parent = by_id.get(parent.parent_id) if parent.parent_id else None
            steps -= 1
        if counted_above:
            continue
        for key, n in span.token_usage.items():
            if isinstance(n, int) and not isinstance(n, bool):
                total[key] = total.get(key, 0) + n
    return total or None


def span_record(span: Span, walk: _Walk) -> dict[str, Any]:
    record: dict[str, Any] = {
        "span_id": span.span_id,
        "parent_id": span.parent_id,
        "name": name(span.name),
        "span_type": span.span_type,
        "start_time_ns": span.start_time_ns,
        "end_time_ns": span.end_time_ns,
        "status": {"code": span.status, "message": span.status_message},
        "inputs": walk.value(span.inputs),
        "outputs": walk.value(span.outputs),
        # No copies first: the walk takes its own snapshot of every container it reads.
        "attributes": walk.value(span.attributes) if span.attributes else {},
        "events": walk.value(span.events) if span.events else [],
    }
    if span.token_usage:
        record["token_usage"] = walk.value(span.token_usage)
    return record


def trace_record(
    trace: TraceState,
    resource: Mapping[str, Any],
    max_value_chars: int,
    max_trace_chars: int,
) -> dict[str, Any]:
    """The `tracekit.trace/1` record of a finished trace whose deferred mapping has run
    (`fill_deferred`); costs are added to it after (`_cost.add_costs`)."""
    walk = _Walk(max_value_chars, max_trace_chars)
    spans = list(trace.spans)
    root = trace.root if trace.root is not None else spans[0]
    metadata = dict(trace.metadata)
    if trace.dropped_spans:
        metadata["tracekit.dropped_spans"] = trace.dropped_spans
    tags = trace.tags
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "trace_id": trace.trace_id,
        "name": name(root.name),
        "status": root.status,
        "start_time_ns": root.start_time_ns,
        "end_time_ns": root.end_time_ns,
        # Most traces have neither: no walk of an empty dict.
        "tags": {
            k: v if isinstance(v, str) else json.dumps(v) for k, v in walk.value(dict(tags)).items()
        }
        if tags
        else {},
        "metadata": walk.value(metadata) if metadata else {},
    }
    usage = sum_usage(spans)
    if usage:
        record["token_usage"] = usage
    record["resource"] = dict(resource)
    record["spans"] = [span_record(span, walk) for span in spans]
    return record
