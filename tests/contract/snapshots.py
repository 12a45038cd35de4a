"""Whole exported records, compared with the JSON snapshots in snapshots/.

A record is masked first (times, the server's port, time to first chunk, the
stack trace's paths: what changes from run to run or checkout to checkout), then
compared whole, so any change to what a provider
records shows as a diff. After an intended change, rewrite the snapshots and
review the diff:

    TRACEKIT_UPDATE_SNAPSHOTS=1 python -m pytest tests/contract -q
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).resolve().parent / "snapshots"
MASKED = "<masked>"
VOLATILE = {
    "start_time_ns",
    "end_time_ns",
    "timestamp_ns",
    "exception.stacktrace",  # file paths and line numbers of the checkout
    "server.port",
    "tracekit.time_to_first_chunk_s",
}
_PORT = re.compile(r"127\.0\.0\.1:\d+")


def record(trace: dict[str, Any], volatile: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A trace record as snapshots hold it: masked, without the `resource` (the
    process's, not the provider's)."""
    masked: dict[str, Any] = mask(trace, volatile)
    masked.pop("resource", None)
    return masked


def mask(value: Any, volatile: frozenset[str] = frozenset()) -> Any:
    """`value` with the volatile fields (and any `volatile` keys too) masked."""
    if isinstance(value, dict):
        return {
            k: MASKED if k in VOLATILE or k in volatile else mask(v, volatile)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask(v, volatile) for v in value]
    if isinstance(value, str):
        return _PORT.sub("127.0.0.1:<port>", value)
    return value


class Snapshots:
    """The snapshots of one session: read once, rewritten at the end when updating."""

    def __init__(self) -> None:
        self.update = os.environ.get("TRACEKIT_UPDATE_SNAPSHOTS") == "1"
        self.files: dict[str, dict[str, Any]] = {}
        self.changed: set[str] = set()
        self.written: dict[tuple[str, str], Any] = {}

    def _file(self, name: str) -> dict[str, Any]:
        if name not in self.files:
            path = FOLDER / f"{name}.json"
            self.files[name] = json.loads(path.read_text()) if path.exists() else {}
        return self.files[name]

    def check(self, file: str, key: str, actual: Any) -> None:
        """`actual` (already masked) must equal the snapshot `key` in `file`.json."""
        actual = json.loads(json.dumps(actual))  # tuples as lists, as they are stored
        stored = self._file(file)
        if self.update:
            # One snapshot serves several tests (sync and async): they must agree.
            if (file, key) in self.written:
                assert actual == self.written[file, key], f"{key}: differs between tests"
            self.written[file, key] = actual
            if stored.get(key) != actual:
                stored[key] = actual
                self.changed.add(file)
            return
        assert key in stored, f"no snapshot {file}.json[{key!r}]: TRACEKIT_UPDATE_SNAPSHOTS=1"
        assert actual == stored[key]

    def write(self) -> None:
        for name in sorted(self.changed):
            text = json.dumps(dict(sorted(self.files[name].items())), indent=1, sort_keys=False)
            (FOLDER / f"{name}.json").write_text(text + "\n")
