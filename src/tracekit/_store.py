"""Reading a file store: every `*.jsonl` under a directory, fragments merged by trace id."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


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


def _well_formed(record: Any) -> bool:
    """A trace record, not some other JSON a hand or a tool put in the store."""
    if not isinstance(record, dict):
        return False
    spans = record.get("spans")
    times = (record.get("start_time_ns"), record.get("end_time_ns"))
    return (
        isinstance(record.get("trace_id"), str)
        and bool(record["trace_id"])
        and isinstance(spans, list)
        and all(isinstance(span, dict) for span in spans)
        and all(t is None or (isinstance(t, int) and not isinstance(t, bool)) for t in times)
    )


def iter_records(directory: Path) -> Iterator[dict[str, Any]]:
    """Every trace record in the store, oldest file first; unreadable lines skipped."""
    for path in sorted(directory.glob("*.jsonl"), key=_age):
        try:
            with path.open("r", encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue  # a torn line from a crashed writer: skip it, keep reading
                    if _well_formed(record):
                        yield record
        except OSError:
            continue


def merge(fragments: list[dict[str, Any]]) -> dict[str, Any]:
    """One record from the fragments of a trace (forks, late spans)."""
    if len(fragments) == 1:
        return fragments[0]
    roots = [f for f in fragments if f["spans"] and f["spans"][0].get("parent_id") is None]

    first = roots[0] if roots else min(fragments, key=lambda f: f.get("start_time_ns") or 0)
    main: dict[str, Any] = dict(first)
    main["spans"] = [span for f in fragments for span in f.get("spans", [])]
    usage: dict[str, int] = {}
    for fragment in fragments:
        for key, n in (fragment.get("token_usage") or {}).items():
            usage[key] = usage.get(key, 0) + n
    if usage:
        main["token_usage"] = usage
    cost = [f["cost"] for f in fragments if isinstance(f.get("cost"), dict)]
    if cost:
        from tracekit._cost import merge as merge_cost

        main["cost"] = merge_cost(cost)
    main["tags"] = {k: v for f in fragments for k, v in (f.get("tags") or {}).items()}
    main["metadata"] = {k: v for f in fragments for k, v in (f.get("metadata") or {}).items()}
    return main


def load(directory: Path) -> list[dict[str, Any]]:
    """All traces in the store, merged, newest first."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for record in iter_records(directory):
        by_id.setdefault(record["trace_id"], []).append(record)
    traces = [merge(fragments) for fragments in by_id.values()]
    traces.sort(key=lambda r: r.get("start_time_ns") or 0, reverse=True)
    return traces
