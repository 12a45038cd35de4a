"""Plain-text rendering of trace records: the console exporter, the CLI, the demo."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def format_duration(start_ns: int | None, end_ns: int | None) -> str:
    if start_ns is None or end_ns is None:
        return "open"
    ms = (end_ns - start_ns) / 1e6
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    return f"{ms:.1f} ms" if ms >= 0.1 else f"{(end_ns - start_ns) / 1e3:.0f} µs"


def format_tokens(usage: Mapping[str, Any] | None) -> str:
    if not usage:
        return ""
    parts = [
        f"{short}={usage[key]}"
        for key, short in (
            ("input_tokens", "in"),
            ("output_tokens", "out"),
            ("total_tokens", "total"),
        )
        if key in usage
    ]
    return "tokens " + " ".join(parts) if parts else ""


def format_cost(cost: Mapping[str, Any] | None) -> str:
    """An estimated cost in USD (`tracekit ls`, `tracekit show`), or "" without one."""
    total = (cost or {}).get("total_cost")
    if not isinstance(total, (int, float)) or isinstance(total, bool):
        return ""
    return f"${total:,.6f}"


def _status(span: Mapping[str, Any]) -> tuple[str, str]:
    status = span.get("status") or {}
    if isinstance(status, Mapping):
        return str(status.get("code", "UNSET")), str(status.get("message") or "")
    return str(status), ""


def span_line(span: Mapping[str, Any]) -> str:
    code, message = _status(span)
    parts = [
        str(span.get("name", "?")),
        f"[{span.get('span_type', 'UNKNOWN')}]",
        format_duration(span.get("start_time_ns"), span.get("end_time_ns")),
        code,
    ]
    tokens = format_tokens(span.get("token_usage"))
    if tokens:
        parts.append(tokens)
    cost = format_cost(span.get("cost"))
    if cost:
        parts.append("cost " + cost)
    if message:
        parts.append(f"- {message.splitlines()[0][:200]}")
    forced = (span.get("attributes") or {}).get("tracekit.force_ended")
    if forced:
        parts.append("(force-ended)")
    return "  ".join(parts)


def _children(spans: Iterable[Mapping[str, Any]]) -> tuple[list[Any], dict[str, list[Any]]]:
    spans = list(spans)
    ids = {s.get("span_id") for s in spans}
    roots: list[Any] = []
    children: dict[str, list[Any]] = {}
    for span in spans:
        parent = span.get("parent_id")
        if parent and parent in ids:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)
    return roots, children


#: Deeper than this, a line shows its depth instead of more indentation (a
#: 10,000-deep trace would otherwise print lines of 30,000 characters).
MAX_INDENT = 40


def _by_start(span: Mapping[str, Any]) -> Any:
    return span.get("start_time_ns") or 0


def render_tree(spans: Iterable[Mapping[str, Any]]) -> list[str]:
    """Indented tree lines for spans (spans whose parent is absent start a branch).

    Iterative, so any depth renders (beyond `MAX_INDENT` levels a line shows
    its depth instead of more indentation); spans in a parent cycle, which
    no root reaches, start branches of their own; every span is shown once.
    """
    spans = list(spans)
    roots, children = _children(spans)
    lines: list[str] = []
    shown: set[int] = set()
    stack: list[tuple[Mapping[str, Any], str, bool, bool, int]] = []
    unreached = iter(spans)
    for root in sorted(roots, key=_by_start, reverse=True):
        stack.append((root, "", True, True, 0))
    while True:
        if not stack:  # what no root reached: parent cycles
            orphan = next((s for s in unreached if id(s) not in shown), None)
            if orphan is None:
                return lines
            stack.append((orphan, "", True, True, 0))
        span, prefix, last, top, depth = stack.pop()
        if id(span) in shown:
            continue
        shown.add(id(span))
        branch = "" if top else ("└─ " if last else "├─ ")
        label = f"[depth {depth}] " if depth > MAX_INDENT else ""
        lines.append(prefix + branch + label + span_line(span))
        inner = prefix
        if depth < MAX_INDENT:
            inner += "" if top else ("   " if last else "│  ")
        kids = sorted(children.get(str(span.get("span_id")), []), key=_by_start)
        for i in range(len(kids) - 1, -1, -1):
            stack.append((kids[i], inner, i == len(kids) - 1, False, depth + 1))


def render_trace(record: Mapping[str, Any]) -> str:
    """A header line and the span tree of one trace record."""
    header = [
        f"trace {record.get('trace_id')}",
        str(record.get("name", "")),
        str(record.get("status", "")),
        format_duration(record.get("start_time_ns"), record.get("end_time_ns")),
    ]
    tokens = format_tokens(record.get("token_usage"))
    if tokens:
        header.append(tokens)
    cost = format_cost(record.get("cost"))
    if cost:
        header.append("cost " + cost)
    incomplete = (record.get("metadata") or {}).get("tracekit.incomplete")
    if incomplete:
        header.append(f"(incomplete: {incomplete})")
    lines = ["  ".join(header)]
    lines.extend("  " + line for line in render_tree(record.get("spans") or []))
    lines.extend(assessment_line(a) for a in record.get("assessments") or [])
    return "\n".join(lines)


def assessment_line(assessment: Mapping[str, Any]) -> str:
    """`  feedback thumbs_up = true  by HUMAN user-42  "why"` (a file store's assessment)."""
    import json

    source = assessment.get("source") or {}
    parts = [
        f"  {assessment.get('kind', 'feedback')} {assessment.get('name')} = "
        + json.dumps(assessment.get("value"), ensure_ascii=False)[:200],
        f"by {source.get('source_type', 'HUMAN')} {source.get('source_id', '')}".rstrip(),
    ]
    if assessment.get("span_id"):
        parts.append(f"on span {assessment['span_id']}")
    if assessment.get("rationale"):
        parts.append(json.dumps(str(assessment["rationale"])[:200], ensure_ascii=False))
    if assessment.get("error"):
        parts.append(f"error {assessment['error'].get('error_code')}")
    return "  ".join(parts)
