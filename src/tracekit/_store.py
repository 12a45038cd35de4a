"""Reading a file store: every `*.jsonl` under a directory, fragments merged by trace id.

Whatever is in the files, reading never fails: a line that is not a trace
record tracekit can show (torn, garbage, nested deeper than tracekit writes,
wrongly typed fields, numbers no clock reaches) is skipped and counted, so one
hostile line never hides the good ones beside it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Nesting tracekit never exceeds (values are cut at 32 levels inside a span).
MAX_NESTING = 64
_MAX_NS = 1 << 63  # nanoseconds since 1970 fit in a signed 64-bit integer (year 2262)
_MAX_ID = 256


def store_path(explicit: str | None = None) -> Path:
    """The store the CLI and the demo read: `explicit`, else the first file destination
    in `TRACEKIT_TRACKING_URI`, else `./.tracekit`."""
    if explicit:
        return Path(explicit).expanduser()
    from tracekit._config import DEFAULT_STORE
    from tracekit.exporters import store_directory

    for uri in os.environ.get("TRACEKIT_TRACKING_URI", "").split(","):
        directory = store_directory(uri.strip()) if uri.strip() else None
        if directory is not None:
            return directory
    return Path(DEFAULT_STORE)


def _age(path: Path) -> tuple[float, str]:
    try:
        return path.stat().st_mtime, path.name
    except OSError:  # rotated away by a writer since we listed the directory
        return 0.0, path.name


def _time(value: Any) -> bool:
    return value is None or (
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _MAX_NS
    )


def _id(value: Any, optional: bool = False) -> bool:
    if value is None:
        return optional
    return isinstance(value, str) and 0 < len(value) <= _MAX_ID


def _nesting_ok(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether `value` nests no deeper than `limit` (iteratively: no recursion to run out of)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def _span_ok(span: Any) -> bool:
    return (
        isinstance(span, dict)
        and _id(span.get("span_id"))
        and _id(span.get("parent_id"), optional=True)
        and _time(span.get("start_time_ns"))
        and _time(span.get("end_time_ns"))
        and isinstance(span.get("attributes") or {}, dict)
        and isinstance(span.get("token_usage") or {}, dict)
        and isinstance(span.get("status") or {}, (dict, str))
    )


def _well_formed(record: Any) -> bool:
    """A trace record, not some other JSON a hand or a tool put in the store."""
    if not isinstance(record, dict):
        return False
    spans = record.get("spans")
    return (
        _id(record.get("trace_id"))
        and isinstance(spans, list)
        and all(_span_ok(span) for span in spans)
        and _time(record.get("start_time_ns"))
        and _time(record.get("end_time_ns"))
        and all(isinstance(record.get(k) or {}, dict) for k in ("tags", "metadata", "token_usage"))
        and _nesting_ok(record)
    )


def parse_line(line: str | bytes) -> dict[str, Any] | None:
    """The trace record on one line, or None for anything else."""
    if isinstance(line, bytes):  # bytes that are not UTF-8 read as U+FFFD, as a text editor would
        line = line.decode("utf-8", "replace")
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # torn, garbage, or nested past the parser's limit
        return None
    return record if _well_formed(record) else None


@dataclass
class Lines:
    """What one file held: its trace records, and how many lines were skipped."""

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0


def read_lines(path: Path) -> Lines:
    """The records of one JSON-lines file (blank lines are not counted as skipped)."""
    lines = Lines()
    try:
        with path.open("rb") as handle:
            for line in handle:
                if not line.strip():
                    continue
                record = parse_line(line)
                if record is None:
                    lines.skipped += 1
                else:
                    lines.records.append(record)
    except OSError:
        pass  # rotated or removed meanwhile
    return lines


def iter_records(directory: Path, skipped: list[int] | None = None) -> Iterator[dict[str, Any]]:
    """Every trace record in the store, oldest file first; unreadable lines skipped
    (and counted in `skipped[0]` when given)."""
    for path in sorted(directory.glob("*.jsonl"), key=_age):
        lines = read_lines(path)
        if skipped is not None:
            skipped[0] += lines.skipped
        yield from lines.records


def _usage(fragments: list[dict[str, Any]]) -> dict[str, int]:
    usage: dict[str, int] = {}
    for fragment in fragments:
        for key, n in (fragment.get("token_usage") or {}).items():
            if isinstance(n, int) and not isinstance(n, bool):
                usage[key] = usage.get(key, 0) + n
    return usage


def merge(fragments: list[dict[str, Any]]) -> dict[str, Any]:
    """One record from the fragments of a trace (forks, late spans)."""
    if len(fragments) == 1:
        return fragments[0]
    roots = [f for f in fragments if f["spans"] and f["spans"][0].get("parent_id") is None]

    first = roots[0] if roots else min(fragments, key=lambda f: f.get("start_time_ns") or 0)
    main: dict[str, Any] = dict(first)
    main["spans"] = [span for f in fragments for span in f.get("spans", [])]
    usage = _usage(fragments)
    if usage:
        main["token_usage"] = usage
    cost = [f["cost"] for f in fragments if isinstance(f.get("cost"), dict)]
    if cost:
        from tracekit._cost import merge as merge_cost

        main["cost"] = merge_cost(cost)
    main["tags"] = {k: v for f in fragments for k, v in (f.get("tags") or {}).items()}
    main["metadata"] = {k: v for f in fragments for k, v in (f.get("metadata") or {}).items()}
    return main


def load_counted(directory: Path) -> tuple[list[dict[str, Any]], int]:
    """All traces in the store, merged, newest first; and how many lines were skipped."""
    skipped = [0]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for record in iter_records(directory, skipped):
        by_id.setdefault(record["trace_id"], []).append(record)
    traces = [merge(fragments) for fragments in by_id.values()]
    traces.sort(key=lambda r: r.get("start_time_ns") or 0, reverse=True)
    return traces, skipped[0]


def load(directory: Path) -> list[dict[str, Any]]:
    """All traces in the store, merged, newest first."""
    return load_counted(directory)[0]
