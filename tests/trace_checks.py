"""Reading exported trace records in tests: the one span, the span tree, completeness."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from tracekit.testing import Capture


def only_trace(captured: Capture) -> tuple[dict[str, Any], dict[str, Any]]:
    """The one trace recorded and its one span (one call, one span)."""
    traces = captured.traces
    assert len(traces) == 1, [t["name"] for t in traces]
    spans = traces[0]["spans"]
    assert len(spans) == 1, [s["name"] for s in spans]
    return traces[0], spans[0]


def only_span(captured: Capture) -> dict[str, Any]:
    """The span of the one trace recorded (one call, one span)."""
    return only_trace(captured)[1]


def tree(
    record: dict[str, Any], *, by_start: bool = False, fragment: bool = False
) -> tuple[Any, ...]:
    """The span tree of a trace record as nested `(name, [children...])`.

    Children are sorted by their repr, or by start time (then span id) with `by_start`.
    Every span must belong to the tree: unique span ids, exactly one root, every other
    span's parent a span of the trace. The root has no parent, or with `fragment` (a
    fragment exported by another process) a parent outside the record.
    """
    spans = record["spans"]
    ids = [s["span_id"] for s in spans]
    assert len(ids) == len(set(ids)), f"duplicate span ids in {ids}"
    if fragment:
        roots = [s for s in spans if s["parent_id"] not in ids]
    else:
        roots = [s for s in spans if s["parent_id"] is None]
    assert len(roots) == 1, f"expected one root, got {[s['name'] for s in roots]}"
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        if span is not roots[0]:
            assert span["parent_id"] in ids, f"{span['name']} has a parent outside its trace"
            children[span["parent_id"]].append(span)

    def node(span: dict[str, Any]) -> tuple[Any, ...]:
        kids = children[span["span_id"]]
        if by_start:
            kids = sorted(kids, key=lambda s: (s["start_time_ns"], s["span_id"]))
            return (span["name"], [node(k) for k in kids])
        return (span["name"], sorted((node(k) for k in kids), key=repr))

    return node(roots[0])


def by_name(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The spans of a trace by name (names must be unique in it)."""
    spans = {s["name"]: s for s in record["spans"]}
    assert len(spans) == len(record["spans"]), "span names are not unique in this trace"
    return spans


def assert_complete(record: dict[str, Any], *, ok: bool = False) -> None:
    """Every span ended by the code (not force-ended), the trace not marked incomplete;
    with `ok`, every span's status OK too."""
    assert "tracekit.incomplete" not in record["metadata"], record["metadata"]
    for span in record["spans"]:
        assert span["end_time_ns"] is not None, span["name"]
        assert span["end_time_ns"] >= span["start_time_ns"], span["name"]
        assert "tracekit.force_ended" not in span["attributes"], span["name"]
        if ok:
            assert span["status"]["code"] == "OK", span
